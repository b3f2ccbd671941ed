from reversibility import figures, runtime
from reversibility.tables import read_csv

with runtime.job_log(snakemake.log[0]):
    model, dataset = snakemake.wildcards.model, snakemake.wildcards.dataset
    rows = [r for r in read_csv(snakemake.input.benchmarks) if r["model"] == model and r["dataset"] == dataset]
    figures.benchmark_accuracy(rows, snakemake.output.png.removesuffix(".png"))
