rule metrics_base:
    input:
        capture="results/activations/{model}/{dataset}/base.h5",
        manifest="results/data/{dataset}/manifest.json",
    output:
        "results/metrics/{model}/{dataset}/base/n{n}.json",
        "results/metrics/{model}/{dataset}/base/n{n}.json.meta.json",
    log:
        "results/logs/metrics/{model}/{dataset}/base/n{n}.log",
    conda:
        SOFTWARE_ENV
    script:
        "../../scripts/metrics.py"


use rule metrics_base as metrics with:
    input:
        capture="results/activations/{model}/{dataset}/{method}/n{n}/lr{lr}/{stage}.h5",
        manifest="results/data/{dataset}/manifest.json",
    output:
        "results/metrics/{model}/{dataset}/{method}/n{n}/lr{lr}/{stage}.json",
        "results/metrics/{model}/{dataset}/{method}/n{n}/lr{lr}/{stage}.json.meta.json",
    log:
        "results/logs/metrics/{model}/{dataset}/{method}/n{n}/lr{lr}/{stage}.log",


rule diagnostics:
    input:
        base="results/activations/{model}/{dataset}/base.h5",
        stage="results/activations/{model}/{dataset}/{method}/n{n}/lr{lr}/{stage}.h5",
        manifest="results/data/{dataset}/manifest.json",
    output:
        "results/diagnostics/{model}/{dataset}/{method}/n{n}/lr{lr}/{stage}.json",
        "results/diagnostics/{model}/{dataset}/{method}/n{n}/lr{lr}/{stage}.json.meta.json",
    log:
        "results/logs/diagnostics/{model}/{dataset}/{method}/n{n}/lr{lr}/{stage}.log",
    conda:
        SOFTWARE_ENV
    script:
        "../../scripts/diagnostics.py"
