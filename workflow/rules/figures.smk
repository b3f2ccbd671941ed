rule tables:
    input:
        metrics=all_metrics(),
        diagnostics=all_diagnostics(),
        curves=all_curves(),
    output:
        **table_outputs(),
    params:
        regimes=canonical(config["regimes"]),
    log:
        "results/logs/tables.log",
    conda:
        SOFTWARE_ENV
    script:
        "../../scripts/tables.py"


rule figures:
    input:
        metrics="results/tables/metrics.csv",
        regimes="results/tables/regimes.csv",
        representations="results/tables/representations.csv",
        fisher_histograms="results/tables/fisher_histograms.csv",
        fisher="results/tables/fisher.csv",
        requests="results/tables/requests.csv",
        relearning="results/tables/relearning.csv",
        recovery="results/tables/recovery.csv",
        quantization="results/tables/quantization.csv",
        prediction_cells="results/tables/prediction_cells.csv",
        prediction="results/tables/prediction.csv",
    output:
        **figure_outputs(),
    log:
        "results/logs/figures/{model}/{dataset}.log",
    conda:
        SOFTWARE_ENV
    script:
        "../../scripts/figures.py"


# Only experiments that name benchmarks draw this figure.
rule benchmark_figure:
    input:
        benchmarks="results/tables/benchmarks.csv",
    output:
        png=report(
            f"results/figures/{{model}}/{{dataset}}/{BENCHMARK_FIGURE[0]}.png",
            caption=f"../report/figures/{BENCHMARK_FIGURE[0]}.rst",
            category=BENCHMARK_FIGURE[1],
            subcategory="{model} / {dataset}",
        ),
        pdf=f"results/figures/{{model}}/{{dataset}}/{BENCHMARK_FIGURE[0]}.pdf",
    log:
        "results/logs/figures/{model}/{dataset}/benchmark_accuracy.log",
    conda:
        SOFTWARE_ENV
    script:
        "../../scripts/benchmark_figure.py"
