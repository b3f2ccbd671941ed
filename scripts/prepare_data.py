from pathlib import Path

from reversibility import runtime
from reversibility.stages import prepare_data as stage

with runtime.job_log(snakemake.log[0]):
    stage.prepare_data(
        snakemake.wildcards.dataset,
        out_dir=Path(snakemake.output[0]).parent,
        **snakemake.params.config,
    )
