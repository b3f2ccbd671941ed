rule unlearn:
    input:
        unpack(source_data("baseline", prefix="baseline_")),
        **prepared_data(),
        base=base_checkpoint,
    output:
        unlearned=directory("results/runs/{model}/{dataset}/{method}/n{n}/lr{lr}/s{seed}/unlearned"),
        curve="results/metrics/{model}/{dataset}/{method}/n{n}/lr{lr}/s{seed}/requests.json",
    log:
        "results/logs/unlearn/{model}/{dataset}/{method}/n{n}/lr{lr}/s{seed}.log",
    conda:
        SOFTWARE_ENV
    threads: model_threads
    resources:
        gpu=model_resource("gpu"),
        gpu_model=model_resource("gpu_model"),
        mem_mb=model_resource("mem_mb"),
        runtime=model_resource("runtime"),
    params:
        config=unlearn_params,
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
        **prepared_data(),
        unlearned="results/runs/{model}/{dataset}/{method}/n{n}/lr{lr}/s{seed}/unlearned",
    output:
        relearned=directory("results/runs/{model}/{dataset}/{method}/n{n}/lr{lr}/s{seed}/relearned"),
        unlearned_capture="results/activations/{model}/{dataset}/{method}/n{n}/lr{lr}/s{seed}/unlearned.h5",
        relearned_capture="results/activations/{model}/{dataset}/{method}/n{n}/lr{lr}/s{seed}/relearned.h5",
        curve="results/metrics/{model}/{dataset}/{method}/n{n}/lr{lr}/s{seed}/relearning.json",
        reversal="results/metrics/{model}/{dataset}/{method}/n{n}/lr{lr}/s{seed}/reversal.json",
    log:
        "results/logs/relearn/{model}/{dataset}/{method}/n{n}/lr{lr}/s{seed}.log",
    conda:
        SOFTWARE_ENV
    threads: model_threads
    resources:
        gpu=model_resource("gpu"),
        gpu_model=model_resource("gpu_model"),
        mem_mb=model_resource("mem_mb"),
        runtime=model_resource("runtime"),
    params:
        config=relearn_params,
    script:
        "../../scripts/relearn.py"
