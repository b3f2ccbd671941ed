from pathlib import Path

from reversibility import runtime
from reversibility.layout import benchmark_dirs
from reversibility.stages import capture as stage

with runtime.job_log(snakemake.log[0]):
    stage.capture_base(
        snakemake.input.base,
        Path(snakemake.input.manifest).parent,
        snakemake.output[0],
        threads=snakemake.threads,
        benchmark_dirs=benchmark_dirs(snakemake.input),
        **snakemake.params.config,
    )
