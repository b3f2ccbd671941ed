rule prepare_data:
    input:
        dataset_files,
    output:
        "results/data/{dataset}/manifest.json",
        multiext("results/data/{dataset}/", *SPLIT_FILES),
    log:
        "results/logs/prepare_data/{dataset}.log",
    conda:
        SOFTWARE_ENV
    params:
        config=data_params,
    script:
        "../../scripts/prepare_data.py"


# An evaluation benchmark's problems with their reference answers (held-out benchmarks need none:
# their problems are a split of the dataset).
rule prepare_benchmark:
    input:
        benchmark_files,
    output:
        problems="results/benchmarks/{benchmark}/problems.jsonl",
        manifest="results/benchmarks/{benchmark}/manifest.json",
    log:
        "results/logs/prepare_benchmark/{benchmark}.log",
    conda:
        SOFTWARE_ENV
    params:
        config=benchmark_params,
    script:
        "../../scripts/prepare_benchmark.py"
