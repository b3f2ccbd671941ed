from reversibility import figures, runtime
from reversibility.tables import read_csv

with runtime.job_log(snakemake.log[0]):
    tables = {name: read_csv(path) for name, path in snakemake.input.items()}
    first = snakemake.output[0]
    figures.draw_all(tables, snakemake.wildcards.model, snakemake.wildcards.dataset,
                     out_dir=first.rsplit("/", 1)[0])
