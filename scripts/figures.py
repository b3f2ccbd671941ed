from reversibility import figures, runtime
from reversibility.tables import read_csv

with runtime.job_log(snakemake.log[0]):
    tables = {name: read_csv(path) for name, path in snakemake.input.items()}
    figures.draw_all(
        tables,
        snakemake.wildcards.model,
        snakemake.wildcards.dataset,
        out_dir=snakemake.output[0].rsplit("/", 1)[0],
        needs_benchmarks=snakemake.params.needs_benchmarks,
    )
