from pathlib import Path

from reversibility import runtime
from reversibility.stages import training as stage

with runtime.job_log(snakemake.log[0]):
    stage.unlearn(
        snakemake.input.base,
        Path(snakemake.input.manifest).parent,
        snakemake.output.unlearned,
        curve_path=snakemake.output.curve,
        baseline_data_dir=Path(snakemake.input.get("baseline_manifest", snakemake.input.manifest)).parent,
        threads=snakemake.threads,
        # Memory only (the same weights): read from the config, so that switching it reruns nothing.
        checkpointing=snakemake.config["models"][snakemake.wildcards.model]["gradient_checkpointing"],
        **snakemake.params.config,
    )
