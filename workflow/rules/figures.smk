rule tables:
    input:
        metrics=all_metrics(),
        diagnostics=all_diagnostics(),
        curves=all_curves(),
    output:
        metrics=report(
            "results/tables/metrics.csv",
            caption="../report/metrics_table.rst",
            category="Tables",
        ),
        cka=report(
            "results/tables/cka.csv",
            caption="../report/cka_table.rst",
            category="Tables",
        ),
        requests=report(
            "results/tables/requests.csv",
            caption="../report/requests_table.rst",
            category="Tables",
        ),
        relearning=report(
            "results/tables/relearning.csv",
            caption="../report/relearning_table.rst",
            category="Tables",
        ),
    log:
        "results/logs/tables.log",
    conda:
        SOFTWARE_ENV
    script:
        "../../scripts/tables.py"


rule figures:
    input:
        metrics="results/tables/metrics.csv",
        cka="results/tables/cka.csv",
    output:
        cka_png=report(
            "results/figures/{model}/{dataset}/cka_per_layer.png",
            caption="../report/cka_per_layer.rst",
            category="Representations",
            subcategory="{model} / {dataset}",
        ),
        cka_pdf="results/figures/{model}/{dataset}/cka_per_layer.pdf",
        accuracy_png=report(
            "results/figures/{model}/{dataset}/accuracy.png",
            caption="../report/accuracy.rst",
            category="Token metrics",
            subcategory="{model} / {dataset}",
        ),
        accuracy_pdf="results/figures/{model}/{dataset}/accuracy.pdf",
    log:
        "results/logs/figures/{model}/{dataset}.log",
    conda:
        SOFTWARE_ENV
    script:
        "../../scripts/figures.py"
