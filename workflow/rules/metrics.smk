# Token metrics and representation diagnostics read captures only (no model, no torch).
# The base model's metrics are per N: its F.Acc is measured on the cell's forget set.


rule metrics_base:
    input:
        **prepared_data(),
        base="results/activations/{model}/{dataset}/{replicate}/base.h5",
    output:
        base="results/metrics/{model}/{dataset}/{replicate}/base/n{n}.json",
        base_meta="results/metrics/{model}/{dataset}/{replicate}/base/n{n}.json.meta.json",
    log:
        "results/logs/metrics/{model}/{dataset}/{replicate}/base/n{n}.log",
    conda:
        SOFTWARE_ENV
    params:
        config=metrics_params,
    script:
        "../../scripts/metrics.py"


use rule metrics_base as metrics with:
    input:
        **prepared_data(),
        unlearned="results/activations/{model}/{dataset}/{method}/n{n}/lr{lr}/s{seed}/unlearned.h5",
        relearned="results/activations/{model}/{dataset}/{method}/n{n}/lr{lr}/s{seed}/relearned.h5",
    output:
        unlearned="results/metrics/{model}/{dataset}/{method}/n{n}/lr{lr}/s{seed}/unlearned.json",
        unlearned_meta="results/metrics/{model}/{dataset}/{method}/n{n}/lr{lr}/s{seed}/unlearned.json.meta.json",
        relearned="results/metrics/{model}/{dataset}/{method}/n{n}/lr{lr}/s{seed}/relearned.json",
        relearned_meta="results/metrics/{model}/{dataset}/{method}/n{n}/lr{lr}/s{seed}/relearned.json.meta.json",
    log:
        "results/logs/metrics/{model}/{dataset}/{method}/n{n}/lr{lr}/s{seed}.log",


rule diagnostics:
    input:
        **prepared_data(),
        base=base_capture,
        unlearned="results/activations/{model}/{dataset}/{method}/n{n}/lr{lr}/s{seed}/unlearned.h5",
        relearned="results/activations/{model}/{dataset}/{method}/n{n}/lr{lr}/s{seed}/relearned.h5",
    output:
        unlearned="results/diagnostics/{model}/{dataset}/{method}/n{n}/lr{lr}/s{seed}/unlearned.json",
        unlearned_meta="results/diagnostics/{model}/{dataset}/{method}/n{n}/lr{lr}/s{seed}/unlearned.json.meta.json",
        relearned="results/diagnostics/{model}/{dataset}/{method}/n{n}/lr{lr}/s{seed}/relearned.json",
        relearned_meta="results/diagnostics/{model}/{dataset}/{method}/n{n}/lr{lr}/s{seed}/relearned.json.meta.json",
    log:
        "results/logs/diagnostics/{model}/{dataset}/{method}/n{n}/lr{lr}/s{seed}.log",
    conda:
        SOFTWARE_ENV
    params:
        config=diagnostics_params,
    script:
        "../../scripts/diagnostics.py"
