from reversibility import runtime
from reversibility.stages import import_model as stage

with runtime.job_log(snakemake.log[0]):
    stage.import_model(snakemake.wildcards.model, snakemake.params.config["spec"], snakemake.output[0])
