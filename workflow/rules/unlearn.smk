rule unlearn:
    input:
        unpack(source_data("baseline", prefix="baseline_")),
        base="results/models/{model}/{dataset}/base",
        **prepared_data(),
    output:
        unlearned=directory("results/runs/{model}/{dataset}/{method}/n{n}/lr{lr}/unlearned"),
        curve="results/metrics/{model}/{dataset}/{method}/n{n}/lr{lr}/requests.json",
    params:
        config=unlearn_params,
    threads: model_threads
    resources:
        gpu=model_resource("gpu"),
        gpu_model=model_resource("gpu_model"),
        mem_mb=model_resource("mem_mb"),
        runtime=model_resource("runtime"),
    log:
        "results/logs/unlearn/{model}/{dataset}/{method}/n{n}/lr{lr}.log",
    conda:
        SOFTWARE_ENV
    script:
        "../../scripts/unlearn.py"


# Relearning starts from the unlearned model and ends with the relearned one: the job captures
# both, so each model is loaded once (a job's start-up, importing torch and transformers, costs
# more than a tiny model's forward passes; see bench/job_startup.py).
rule relearn:
    input:
        unpack(source_data("relearning", prefix="source_")),
        unpack(prepared_benchmarks),
        unpack(lora_base_input),
        unlearned="results/runs/{model}/{dataset}/{method}/n{n}/lr{lr}/unlearned",
        **prepared_data(),
    output:
        relearned=directory("results/runs/{model}/{dataset}/{method}/n{n}/lr{lr}/relearned"),
        unlearned_capture="results/activations/{model}/{dataset}/{method}/n{n}/lr{lr}/unlearned.h5",
        relearned_capture="results/activations/{model}/{dataset}/{method}/n{n}/lr{lr}/relearned.h5",
        curve="results/metrics/{model}/{dataset}/{method}/n{n}/lr{lr}/relearning.json",
        reversal="results/metrics/{model}/{dataset}/{method}/n{n}/lr{lr}/reversal.json",
    params:
        config=relearn_params,
    threads: model_threads
    resources:
        gpu=model_resource("gpu"),
        gpu_model=model_resource("gpu_model"),
        mem_mb=model_resource("mem_mb"),
        runtime=model_resource("runtime"),
    log:
        "results/logs/relearn/{model}/{dataset}/{method}/n{n}/lr{lr}.log",
    conda:
        SOFTWARE_ENV
    script:
        "../../scripts/relearn.py"
