from pathlib import Path

from reversibility import runtime
from reversibility.stages import prepare_benchmark as stage

with runtime.job_log(snakemake.log[0]):
    stage.prepare_benchmark(
        snakemake.wildcards.benchmark, out_dir=Path(snakemake.output.manifest).parent, **snakemake.params.config
    )
