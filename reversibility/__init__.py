"""Reversibility of LLM unlearning: data, models, unlearning, capture, diagnostics and metrics.

Every stage of the Snakemake workflow calls into this package; the rules' scripts only unpack
Snakemake's objects. Heavy dependencies (torch, transformers) are imported by the modules that
need them, so light stages (metrics, tables, figures) start fast.
"""

__version__ = "0.1.0"
