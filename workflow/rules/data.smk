rule prepare_data:
    input:
        dataset_files,
    output:
        "results/data/{dataset}/manifest.json",
        multiext("results/data/{dataset}/", *SPLIT_FILES),
    params:
        config=data_params,
    log:
        "results/logs/prepare_data/{dataset}.log",
    conda:
        SOFTWARE_ENV
    script:
        "../../scripts/prepare_data.py"
