rule unlearn:
    input:
        base="results/models/{model}/{dataset}/base",
        manifest="results/data/{dataset}/manifest.json",
    output:
        directory("results/runs/{model}/{dataset}/{method}/n{n}/lr{lr}/unlearned"),
    params:
        config=unlearn_params,
    threads: model_threads
    log:
        "results/logs/unlearn/{model}/{dataset}/{method}/n{n}/lr{lr}.log",
    conda:
        SOFTWARE_ENV
    script:
        "../../scripts/unlearn.py"


rule relearn:
    input:
        unlearned="results/runs/{model}/{dataset}/{method}/n{n}/lr{lr}/unlearned",
        manifest="results/data/{dataset}/manifest.json",
    output:
        directory("results/runs/{model}/{dataset}/{method}/n{n}/lr{lr}/relearned"),
    params:
        config=relearn_params,
    threads: model_threads
    log:
        "results/logs/relearn/{model}/{dataset}/{method}/n{n}/lr{lr}.log",
    conda:
        SOFTWARE_ENV
    script:
        "../../scripts/relearn.py"
