from pathlib import Path

from reversibility import runtime
from reversibility.config import generation_budget
from reversibility.stages import training as stage

with runtime.job_log(snakemake.log[0]):
    stage.train_base(
        data_dir=Path(snakemake.input.manifest).parent,
        out_dir=snakemake.output[0],
        model_name=snakemake.wildcards.model,
        threads=snakemake.threads,
        # Memory only (the same weights): read from the config, so that switching it reruns nothing.
        checkpointing=snakemake.config["models"][snakemake.wildcards.model]["gradient_checkpointing"],
        pretrained_dir=snakemake.input.get("pretrained"),
        # Read from the config, not the params: a new benchmark must not retrain the base model.
        generation_tokens=generation_budget(snakemake.config, snakemake.wildcards.model, snakemake.wildcards.dataset),
        **snakemake.params.config,
    )
