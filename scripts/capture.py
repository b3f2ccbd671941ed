from pathlib import Path

from reversibility import runtime
from reversibility.stages import capture as stage

with runtime.job_log(snakemake.log[0]):
    stage.capture(
        {name: (snakemake.input[name], path) for name, path in snakemake.output.items()},
        Path(snakemake.input.manifest).parent,
        threads=snakemake.threads,
        **snakemake.params.config,
    )
