# Token metrics and representation diagnostics read captures only (no model, no torch).
# The base model's metrics are per N: its F.Acc is measured on the cell's forget set.


rule metrics_base:
    input:
        **prepared_data(),
        base="results/activations/{model}/{dataset}/base.h5",
    output:
        base="results/metrics/{model}/{dataset}/base/n{n}.json",
        base_meta="results/metrics/{model}/{dataset}/base/n{n}.json.meta.json",
    log:
        "results/logs/metrics/{model}/{dataset}/base/n{n}.log",
    conda:
        SOFTWARE_ENV
    params:
        config=metrics_params,
    script:
        "../../scripts/metrics.py"


use rule metrics_base as metrics with:
    input:
        **prepared_data(),
        unlearned="results/activations/{model}/{dataset}/{method}/n{n}/lr{lr}/unlearned.h5",
        relearned="results/activations/{model}/{dataset}/{method}/n{n}/lr{lr}/relearned.h5",
    output:
        unlearned="results/metrics/{model}/{dataset}/{method}/n{n}/lr{lr}/unlearned.json",
        unlearned_meta="results/metrics/{model}/{dataset}/{method}/n{n}/lr{lr}/unlearned.json.meta.json",
        relearned="results/metrics/{model}/{dataset}/{method}/n{n}/lr{lr}/relearned.json",
        relearned_meta="results/metrics/{model}/{dataset}/{method}/n{n}/lr{lr}/relearned.json.meta.json",
    log:
        "results/logs/metrics/{model}/{dataset}/{method}/n{n}/lr{lr}.log",


rule diagnostics:
    input:
        **prepared_data(),
        base="results/activations/{model}/{dataset}/base.h5",
        unlearned="results/activations/{model}/{dataset}/{method}/n{n}/lr{lr}/unlearned.h5",
        relearned="results/activations/{model}/{dataset}/{method}/n{n}/lr{lr}/relearned.h5",
    output:
        unlearned="results/diagnostics/{model}/{dataset}/{method}/n{n}/lr{lr}/unlearned.json",
        unlearned_meta="results/diagnostics/{model}/{dataset}/{method}/n{n}/lr{lr}/unlearned.json.meta.json",
        relearned="results/diagnostics/{model}/{dataset}/{method}/n{n}/lr{lr}/relearned.json",
        relearned_meta="results/diagnostics/{model}/{dataset}/{method}/n{n}/lr{lr}/relearned.json.meta.json",
    log:
        "results/logs/diagnostics/{model}/{dataset}/{method}/n{n}/lr{lr}.log",
    conda:
        SOFTWARE_ENV
    params:
        config=diagnostics_params,
    script:
        "../../scripts/diagnostics.py"
