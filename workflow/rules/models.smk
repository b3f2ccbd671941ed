rule base_model:
    input:
        manifest="results/data/{dataset}/manifest.json",
    output:
        directory("results/models/{model}/{dataset}/base"),
    params:
        config=base_params,
    threads: model_threads
    log:
        "results/logs/base_model/{model}/{dataset}.log",
    conda:
        SOFTWARE_ENV
    script:
        "../../scripts/base_model.py"
