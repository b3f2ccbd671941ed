# Reversibility of LLM unlearning: data -> base model -> unlearn x grid -> relearn -> capture
# -> metrics and representation diagnostics -> tables, figures and report.
# The grid and every setting come from the config; see workflow/schemas/config.schema.yaml.

from snakemake.utils import min_version, validate

min_version("9.0")


report: "workflow/report/workflow.rst"


configfile: "config.yaml"


validate(config, schema="workflow/schemas/config.schema.yaml")


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/models.smk"
include: "workflow/rules/unlearn.smk"
include: "workflow/rules/capture.smk"
include: "workflow/rules/metrics.smk"
include: "workflow/rules/figures.smk"


# Aggregations are light: on a cluster they run where Snakemake runs, not as jobs.
localrules:
    all,
    tables,
    figures,
    benchmark_figure,


rule all:
    default_target: True
    input:
        final_outputs(),
