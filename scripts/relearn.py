from pathlib import Path

from reversibility.layout import benchmark_dirs
from reversibility.runtime import training_job
from reversibility.stages import relearn as stage

training_job(
    stage.relearn,
    snakemake,
    unlearned_dir=snakemake.input.unlearned,
    data_dir=Path(snakemake.input.manifest).parent,
    out_dir=snakemake.output.relearned,
    source_data_dir=Path(snakemake.input.get("source_manifest", snakemake.input.manifest)).parent,
    curve_path=snakemake.output.curve,
    reversal_path=snakemake.output.reversal,
    captures={
        "unlearned": snakemake.output.unlearned_capture,
        "relearned": snakemake.output.relearned_capture,
    },
    benchmark_dirs=benchmark_dirs(snakemake.input),
)
