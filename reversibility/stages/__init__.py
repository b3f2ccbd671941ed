"""One module per kind of workflow stage; each function reads a stage's inputs, runs it and
writes its outputs with provenance.

The rules' scripts call these with Snakemake's input/output/params unpacked, so every stage can
be run and tested without Snakemake. Modules that need torch (`training`, `capture`) are separate
from the light ones (`data`, `evaluation`), so light jobs start in a fraction of a second.
"""
