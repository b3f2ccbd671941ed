from reversibility import runtime
from reversibility.config import cells
from reversibility.tables import (
    CKA_COLUMNS,
    METRICS_COLUMNS,
    RELEARNING_COLUMNS,
    REQUEST_COLUMNS,
    cka_rows,
    metrics_rows,
    relearning_rows,
    request_rows,
    write_csv,
)

with runtime.job_log(snakemake.log[0]):
    grid = list(cells(snakemake.config))
    write_csv(snakemake.output.metrics, METRICS_COLUMNS, metrics_rows(grid))
    write_csv(snakemake.output.cka, CKA_COLUMNS, cka_rows(grid))
    write_csv(snakemake.output.requests, REQUEST_COLUMNS, request_rows(grid))
    write_csv(snakemake.output.relearning, RELEARNING_COLUMNS, relearning_rows(grid))
