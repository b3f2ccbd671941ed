from pathlib import Path

from reversibility import runtime
from reversibility.layout import benchmark_dirs
from reversibility.stages import training as stage

with runtime.job_log(snakemake.log[0]):
    stage.relearn(
        snakemake.input.unlearned,
        Path(snakemake.input.manifest).parent,
        snakemake.output.relearned,
        source_data_dir=Path(snakemake.input.get("source_manifest", snakemake.input.manifest)).parent,
        curve_path=snakemake.output.curve,
        reversal_path=snakemake.output.reversal,
        captures={
            "unlearned": snakemake.output.unlearned_capture,
            "relearned": snakemake.output.relearned_capture,
        },
        threads=snakemake.threads,
        benchmark_dirs=benchmark_dirs(snakemake.input),
        # Memory only (the same weights): read from the config, so that switching it reruns nothing.
        checkpointing=snakemake.config["models"][snakemake.wildcards.model]["gradient_checkpointing"],
        **snakemake.params.config,
    )
