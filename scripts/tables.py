from reversibility import runtime
from reversibility.config import cells
from reversibility.layout import local_results
from reversibility.tables import GridResults, write_tables

with runtime.job_log(snakemake.log[0]):
    grid = list(cells(snakemake.config))
    # Read through the declared inputs: with a remote store they are local copies elsewhere.
    results = local_results(snakemake.input.metrics, grid[0])
    write_tables(
        GridResults(grid, results, snakemake.params.regimes, snakemake.config["seed"]), dict(snakemake.output.items())
    )
