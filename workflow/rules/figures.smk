rule tables:
    input:
        metrics=all_metrics(),
        diagnostics=all_diagnostics(),
        curves=all_curves(),
    output:
        **table_outputs(),
    log:
        "results/logs/tables.log",
    conda:
        SOFTWARE_ENV
    params:
        regimes=canonical(config["regimes"]),
    script:
        "../../scripts/tables.py"


rule figures:
    input:
        **figure_inputs(),
    output:
        **figure_outputs(),
    log:
        "results/logs/figures/{model}/{dataset}.log",
    conda:
        SOFTWARE_ENV
    params:
        needs_benchmarks=False,
    script:
        "../../scripts/figures.py"


# Only experiments that name benchmarks draw these figures.
rule benchmark_figure:
    input:
        **figure_inputs(needs_benchmarks=True),
    output:
        **figure_outputs(needs_benchmarks=True),
    log:
        "results/logs/figures/{model}/{dataset}/benchmarks.log",
    conda:
        SOFTWARE_ENV
    params:
        needs_benchmarks=True,
    script:
        "../../scripts/figures.py"
