from reversibility import figures, runtime
from reversibility.tables import read_csv

with runtime.job_log(snakemake.log[0]):
    model, dataset = snakemake.wildcards.model, snakemake.wildcards.dataset

    def mine(rows):
        return [r for r in rows if r["model"] == model and r["dataset"] == dataset]

    figures.cka_per_layer(
        mine(read_csv(snakemake.input.cka)),
        snakemake.output.cka_png,
        snakemake.output.cka_pdf,
        title=f"Per-layer CKA against the base model: {model} on {dataset}",
    )
    figures.accuracy_table(
        mine(read_csv(snakemake.input.metrics)),
        snakemake.output.accuracy_png,
        snakemake.output.accuracy_pdf,
        title=f"Token accuracy: {model} on {dataset}",
    )
