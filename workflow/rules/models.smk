rule import_model:
    output:
        directory("results/models/{model}/pretrained"),
    log:
        "results/logs/import_model/{model}.log",
    conda:
        SOFTWARE_ENV
    threads: model_threads
    resources:
        mem_mb=model_resource("mem_mb"),
        runtime=model_resource("runtime"),
    params:
        config=import_params,
    script:
        "../../scripts/import_model.py"


rule base_model:
    input:
        unpack(pretrained_input),
        **prepared_data(),
    output:
        directory("results/models/{model}/{dataset}/{replicate}/base"),
    log:
        "results/logs/base_model/{model}/{dataset}/{replicate}.log",
    conda:
        SOFTWARE_ENV
    threads: model_threads
    resources:
        gpu=model_resource("gpu"),
        gpu_model=model_resource("gpu_model"),
        mem_mb=model_resource("mem_mb"),
        runtime=model_resource("runtime"),
    params:
        config=base_params,
    script:
        "../../scripts/base_model.py"
