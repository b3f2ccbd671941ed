# The base model's capture: every layer's pooled features and the token statistics the metrics
# need, in one forward pass per split. A cell's models are captured by its relearn job.


rule capture_base:
    input:
        unpack(prepared_benchmarks),
        **prepared_data(),
        base="results/models/{model}/{dataset}/{replicate}/base",
    output:
        "results/activations/{model}/{dataset}/{replicate}/base.h5",
    log:
        "results/logs/capture/{model}/{dataset}/{replicate}/base.log",
    conda:
        SOFTWARE_ENV
    threads: model_threads
    resources:
        gpu=model_resource("gpu", one_process=True),
        gpu_model=model_resource("gpu_model"),
        mem_mb=model_resource("mem_mb"),
        runtime=model_resource("runtime"),
    params:
        config=capture_params,
    script:
        "../../scripts/capture.py"
