from pathlib import Path

from reversibility import runtime
from reversibility.stages import diagnostics as stage

with runtime.job_log(snakemake.log[0]):
    for name in (key for key in snakemake.output.keys() if not key.endswith("_meta")):
        stage.diagnostics(
            snakemake.input.base,
            snakemake.input[name],
            Path(snakemake.input.manifest).parent,
            snakemake.output[name],
            n_requests=int(snakemake.wildcards.n),
            **snakemake.params.config,
        )
