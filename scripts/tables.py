from reversibility import runtime
from reversibility.config import cells
from reversibility.findings import FINDING_COLUMNS, finding_rows
from reversibility.layout import local_results
from reversibility.tables import (
    BENCHMARK_COLUMNS,
    FISHER_COLUMNS,
    HISTOGRAM_COLUMNS,
    METRICS_COLUMNS,
    PREDICTION_CELL_COLUMNS,
    PREDICTION_COLUMNS,
    QUANTIZATION_COLUMNS,
    RECOVERY_COLUMNS,
    REGIME_COLUMNS,
    RELEARNING_COLUMNS,
    REPRESENTATION_COLUMNS,
    REQUEST_COLUMNS,
    SINGLE_COLUMNS,
    SUMMARY_COLUMNS,
    latex_table,
    metrics_rows,
    prediction_cell_rows,
    prediction_rows,
    regime_rows,
    relearning_rows,
    representation_rows,
    request_rows,
    reversal_rows,
    single_unlearning_rows,
    benchmark_rows,
    write_csv,
    write_text,
)

with runtime.job_log(snakemake.log[0]):
    grid = list(cells(snakemake.config))
    out = snakemake.output
    # Read through the declared inputs: with a remote store they are local copies elsewhere.
    results = local_results(snakemake.input.metrics, grid[0])
    metrics = metrics_rows(grid, results=results)
    write_csv(out.metrics, METRICS_COLUMNS, metrics)
    write_csv(out.benchmarks, BENCHMARK_COLUMNS, benchmark_rows(grid, results=results))
    reversal = reversal_rows(grid, results=results)
    write_csv(out.recovery, RECOVERY_COLUMNS, reversal["recovery"])
    write_csv(out.quantization, QUANTIZATION_COLUMNS, reversal["quantization"])
    regimes = regime_rows(metrics, reversal["recovery"], snakemake.params.regimes)
    write_csv(out.regimes, REGIME_COLUMNS, regimes)
    single = single_unlearning_rows(metrics)
    write_csv(out.single_unlearning, SINGLE_COLUMNS, single)
    write_text(out.single_unlearning_latex, latex_table(single))
    representations = representation_rows(grid, results=results)
    write_csv(out.representations, REPRESENTATION_COLUMNS, representations["layers"])
    write_csv(out.summary, SUMMARY_COLUMNS, representations["summary"])
    write_csv(out.fisher, FISHER_COLUMNS, representations["fisher"])
    write_csv(out.fisher_histograms, HISTOGRAM_COLUMNS, representations["histograms"])
    prediction_cells = prediction_cell_rows(regimes, representations["summary"], representations["fisher"])
    write_csv(out.prediction_cells, PREDICTION_CELL_COLUMNS, prediction_cells)
    write_csv(out.prediction, PREDICTION_COLUMNS, prediction_rows(prediction_cells, snakemake.config["seed"]))
    findings = finding_rows(regimes, representations["summary"], representations["layers"], representations["fisher"])
    write_csv(out.findings, FINDING_COLUMNS, findings)
    write_csv(out.requests, REQUEST_COLUMNS, request_rows(grid, results=results))
    write_csv(out.relearning, RELEARNING_COLUMNS, relearning_rows(grid, results=results))
