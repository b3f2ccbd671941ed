# Token metrics and representation diagnostics read captures only (no model, no torch).
# The base model's metrics are per N: its F.Acc is measured on the cell's forget set.


rule metrics_base:
    input:
        base="results/activations/{model}/{dataset}/base.h5",
        **prepared_data(),
    output:
        base="results/metrics/{model}/{dataset}/base/n{n}.json",
        base_meta="results/metrics/{model}/{dataset}/base/n{n}.json.meta.json",
    params:
        config=metrics_params,
    log:
        "results/logs/metrics/{model}/{dataset}/base/n{n}.log",
    conda:
        SOFTWARE_ENV
    script:
        "../../scripts/metrics.py"


use rule metrics_base as metrics with:
    input:
        unlearned="results/activations/{model}/{dataset}/{method}/n{n}/lr{lr}/unlearned.h5",
        relearned="results/activations/{model}/{dataset}/{method}/n{n}/lr{lr}/relearned.h5",
        **prepared_data(),
    output:
        unlearned="results/metrics/{model}/{dataset}/{method}/n{n}/lr{lr}/unlearned.json",
        unlearned_meta="results/metrics/{model}/{dataset}/{method}/n{n}/lr{lr}/unlearned.json.meta.json",
        relearned="results/metrics/{model}/{dataset}/{method}/n{n}/lr{lr}/relearned.json",
        relearned_meta="results/metrics/{model}/{dataset}/{method}/n{n}/lr{lr}/relearned.json.meta.json",
    log:
        "results/logs/metrics/{model}/{dataset}/{method}/n{n}/lr{lr}.log",


rule diagnostics:
    input:
        base="results/activations/{model}/{dataset}/base.h5",
        unlearned="results/activations/{model}/{dataset}/{method}/n{n}/lr{lr}/unlearned.h5",
        relearned="results/activations/{model}/{dataset}/{method}/n{n}/lr{lr}/relearned.h5",
        **prepared_data(),
    output:
        unlearned="results/diagnostics/{model}/{dataset}/{method}/n{n}/lr{lr}/unlearned.json",
        unlearned_meta="results/diagnostics/{model}/{dataset}/{method}/n{n}/lr{lr}/unlearned.json.meta.json",
        relearned="results/diagnostics/{model}/{dataset}/{method}/n{n}/lr{lr}/relearned.json",
        relearned_meta="results/diagnostics/{model}/{dataset}/{method}/n{n}/lr{lr}/relearned.json.meta.json",
    params:
        config=diagnostics_params,
    log:
        "results/logs/diagnostics/{model}/{dataset}/{method}/n{n}/lr{lr}.log",
    conda:
        SOFTWARE_ENV
    script:
        "../../scripts/diagnostics.py"
