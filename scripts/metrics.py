from pathlib import Path

from reversibility import runtime
from reversibility.stages import evaluation as stage

with runtime.job_log(snakemake.log[0]):
    stage.stage_metrics(
        snakemake.input.capture,
        Path(snakemake.input.manifest).parent,
        snakemake.output[0],
        n_requests=int(snakemake.wildcards.n),
    )
