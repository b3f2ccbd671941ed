from pathlib import Path

from reversibility.config import generation_budget
from reversibility.runtime import training_job
from reversibility.stages import base_model as stage

training_job(
    stage.train_base,
    snakemake,
    data_dir=Path(snakemake.input.manifest).parent,
    out_dir=snakemake.output[0],
    model_name=snakemake.wildcards.model,
    pretrained_dir=snakemake.input.get("pretrained"),
    # Read from the config, not the params: a new benchmark must not retrain the base model.
    generation_tokens=generation_budget(snakemake.config, snakemake.wildcards.model, snakemake.wildcards.dataset),
)
