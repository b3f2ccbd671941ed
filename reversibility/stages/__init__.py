"""One module per workflow rule, named after it; each stage function reads a rule's inputs, runs
it and writes its outputs with provenance.

The rules' scripts call these with Snakemake's input/output/params unpacked, so every stage can
be run and tested without Snakemake. The rule `metrics` (and `metrics_base`) is served by
`checkpoint_metrics` (the library's `metrics` holds the metrics themselves); `training_jobs` holds
what the training stages share. Light stages (`prepare_data`, `prepare_benchmark`,
`checkpoint_metrics`, `diagnostics`) import no torch, so their jobs start in a fraction of a
second.
"""
