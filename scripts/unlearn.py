from pathlib import Path

from reversibility.runtime import training_job
from reversibility.stages import unlearn as stage

training_job(
    stage.unlearn,
    snakemake,
    base_dir=snakemake.input.base,
    data_dir=Path(snakemake.input.manifest).parent,
    out_dir=snakemake.output.unlearned,
    curve_path=snakemake.output.curve,
    baseline_data_dir=Path(snakemake.input.get("baseline_manifest", snakemake.input.manifest)).parent,
)
