# A capture job loads each checkpoint once and writes one HDF5 per checkpoint: every layer's
# pooled features and the token statistics the metrics need. A cell's unlearned and relearned
# models are captured by one job (a job's start-up, importing torch and transformers, costs more
# than a tiny model's forward passes).


rule capture_base:
    input:
        manifest="results/data/{dataset}/manifest.json",
        base="results/models/{model}/{dataset}/base",
    output:
        base="results/activations/{model}/{dataset}/base.h5",
    params:
        config=capture_params,
    threads: model_threads
    log:
        "results/logs/capture/{model}/{dataset}/base.log",
    conda:
        SOFTWARE_ENV
    script:
        "../../scripts/capture.py"


use rule capture_base as capture_cell with:
    input:
        manifest="results/data/{dataset}/manifest.json",
        unlearned="results/runs/{model}/{dataset}/{method}/n{n}/lr{lr}/unlearned",
        relearned="results/runs/{model}/{dataset}/{method}/n{n}/lr{lr}/relearned",
    output:
        unlearned="results/activations/{model}/{dataset}/{method}/n{n}/lr{lr}/unlearned.h5",
        relearned="results/activations/{model}/{dataset}/{method}/n{n}/lr{lr}/relearned.h5",
    log:
        "results/logs/capture/{model}/{dataset}/{method}/n{n}/lr{lr}.log",
