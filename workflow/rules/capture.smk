# The base model's capture: every layer's pooled features and the token statistics the metrics
# need, in one forward pass per split. A cell's models are captured by its relearn job.


rule capture_base:
    input:
        unpack(prepared_benchmarks),
        base="results/models/{model}/{dataset}/base",
        **prepared_data(),
    output:
        "results/activations/{model}/{dataset}/base.h5",
    params:
        config=capture_params,
    threads: model_threads
    resources:
        gpu=model_resource("gpu", one_process=True),
        gpu_model=model_resource("gpu_model"),
        mem_mb=model_resource("mem_mb"),
        runtime=model_resource("runtime"),
    log:
        "results/logs/capture/{model}/{dataset}/base.log",
    conda:
        SOFTWARE_ENV
    script:
        "../../scripts/capture.py"
