# Helpers of the workflow: grid enumeration, input functions, the config slice of every rule.
import os
import sys

# The main process and every job import the workflow's own package from this checkout,
# whatever environment runs them (venv, conda, a cluster node).
sys.path.insert(0, workflow.basedir)
os.environ.update(PYTHONPATH=os.pathsep.join(filter(None, [workflow.basedir, os.environ.get("PYTHONPATH")])))

from reversibility.config import (  # noqa: E402
    CELL_STAGES,
    base_replicate,
    canonical,
    cells,
    check,
    experiment_benchmarks,
    replicate_seed,
)
from reversibility.benchmarks import PROBLEM_KEYS as BENCHMARK_PROBLEM_KEYS  # noqa: E402
from reversibility.data import SPLITS  # noqa: E402
from reversibility.figures import per_experiment, tables_read  # noqa: E402
from reversibility.tables import TABLES, caption_of, table_files  # noqa: E402
from reversibility.sources import source_version  # noqa: E402

check(config)

SOFTWARE_ENV = "../../envs/cpu.yaml"
# A grid point: a cell without its seed (a cell's paths add /s{seed}, one of `seeds`).
GRID_POINT = "{model}/{dataset}/{method}/n{n}/lr{lr}"
# The files prepare_data writes beside results/data/<dataset>/manifest.json.
SPLIT_FILES = (*(f"{split}.jsonl" for split in SPLITS), "manifest.json.meta.json")


wildcard_constraints:
    model=r"[A-Za-z0-9][A-Za-z0-9_.-]*",
    dataset=r"[A-Za-z0-9][A-Za-z0-9_.-]*",
    method=r"[a-z0-9_]+",
    n=r"[0-9]+",
    lr=r"[0-9][0-9.e+-]*",
    stage="|".join(CELL_STAGES),
    seed=r"[0-9]+",
    # The folder of a base model: one per seed, or one that every seed shares (`base_per_seed`).
    replicate=r"shared|s[0-9]+",
    benchmark=r"[A-Za-z0-9][A-Za-z0-9_.-]*",


# ----------------------------------------------------------------------------- targets


def grid_cells():
    return list(cells(config))


def experiment_keys():
    return [f"{e['model']}/{e['dataset']}" for e in config["experiments"]]


def figure_outputs(needs_benchmarks=False):
    """Every figure of one (model, dataset) drawn by the figures (or benchmark_figure) job, from the
    registry figures.FIGURES; PNG, in the report under its category and labelled, and PDF."""
    outputs = {}
    for figure in per_experiment(needs_benchmarks):
        outputs[f"{figure.name}_png"] = report(
            f"results/figures/{{model}}/{{dataset}}/{figure.name}.png",
            caption=f"../report/figures/{figure.name}.rst",
            category=figure.category,
            subcategory="{model} / {dataset}",
            labels={"model": "{model}", "dataset": "{dataset}", "figure": figure.name},
        )
        outputs[f"{figure.name}_pdf"] = f"results/figures/{{model}}/{{dataset}}/{figure.name}.pdf"
    return outputs


def figure_inputs(needs_benchmarks=False):
    """The tables the figures of a figure rule read, by name."""
    return {table: f"results/tables/{table}.csv" for table in tables_read(needs_benchmarks)}


def table_outputs():
    """Every table of the registry (tables.TABLES) by output name: its CSV, in the report when it
    has a caption (workflow/report/tables/<caption>.rst), and its other renderings."""
    outputs = {}
    for name in TABLES:
        for key, file in table_files(name).items():
            outputs[key] = f"results/tables/{file}"
        if caption_of(name):
            outputs[name] = report(
                outputs[name],
                caption=f"../report/tables/{caption_of(name)}.rst",
                category="Tables",
                labels={"table": name},
            )
    return outputs


def final_outputs():
    figures = [
        f"results/figures/{e['model']}/{e['dataset']}/{figure.name}.{ext}"
        for e in config["experiments"]
        for needs_benchmarks in (False, True)
        if e.get("benchmarks") or not needs_benchmarks
        for figure in per_experiment(needs_benchmarks)
        for ext in ("png", "pdf")
    ]
    tables = [f"results/tables/{file}" for name in TABLES for file in table_files(name).values()]
    return [*tables, *dict.fromkeys(figures)]


def all_metrics():
    base = {f"results/metrics/{c.base_key}/base/n{c.n_requests}.json" for c in grid_cells()}
    stages = [f"results/metrics/{c.key}/{stage}.json" for c in grid_cells() for stage in CELL_STAGES]
    return sorted(base) + stages


def all_curves():
    kinds = ("requests", "relearning", "reversal")
    return [f"results/metrics/{c.key}/{kind}.json" for c in grid_cells() for kind in kinds]


def all_diagnostics():
    return [f"results/diagnostics/{c.key}/{stage}.json" for c in grid_cells() for stage in CELL_STAGES]


# ----------------------------------------------------------------------------- lookups


def model_spec(wildcards):
    return config["models"][wildcards.model]


def model_threads(wildcards):
    return model_spec(wildcards)["threads"]


def model_resource(name, one_process=False):
    """A resource of the model's jobs, from its spec (`models.<model>.resources`). A job that runs
    as `one_process` (a capture) asks for one GPU of those a sharded training job asks for."""

    def resource(wildcards):
        value = model_spec(wildcards)["resources"][name]
        if one_process and name == "gpu" and value:
            value = 1
        return value if value is not None else ""

    return resource


def pretrained_input(wildcards):
    """A gguf model's converted checkpoint (imported once); other sources need no file."""
    if model_spec(wildcards)["source"] == "gguf":
        return {"pretrained": f"results/models/{wildcards.model}/pretrained"}
    return {}


# ----------------------------------------------------------------------------- params
# Each returns exactly the config slice that shapes the rule's output, so a change reruns the
# jobs it affects and nothing else.


def data_params(wildcards):
    spec = config["datasets"][wildcards.dataset]
    # The installed Python or package the documents come from is part of the slice: a new
    # version of it reruns the split.
    return canonical({"spec": spec, "seed": config["seed"], "source_version": source_version(spec)})


def dataset_files(wildcards):
    """Local files of a dataset (json, parquet, text sources), so that editing one reruns it."""
    # Local to this machine even when results/ lives in a remote store.
    return [local(path) for path in config["datasets"][wildcards.dataset]["files"]]


def prepared_data(dataset="{dataset}", prefix=""):
    """A prepared dataset as inputs: its manifest and every split file beside it. Jobs read the
    splits from the manifest's folder; declaring them is what makes a remote store fetch them."""
    return {
        f"{prefix}manifest": f"results/data/{dataset}/manifest.json",
        f"{prefix}splits": [f"results/data/{dataset}/{name}" for name in SPLIT_FILES],
    }


def source_data(section, prefix):
    """Inputs of the data `<section>.source_dataset` names (relearning's, the baseline's), when it
    is not the cell's own dataset."""

    def inputs(wildcards):
        source = config[section]["source_dataset"]
        return prepared_data(source, prefix=prefix) if source else {}

    return inputs


def benchmark_params(wildcards):
    """What decides a benchmark's problems and answers (prompts and budgets shape only generations)."""
    spec = config["benchmarks"][wildcards.benchmark]
    return canonical({"spec": {key: spec[key] for key in BENCHMARK_PROBLEM_KEYS}})


def benchmark_files(wildcards):
    """Local files of a benchmark, so that editing one reruns its preparation."""
    return [local(path) for path in config["benchmarks"][wildcards.benchmark]["files"]]


def experiment_benchmark_specs(wildcards):
    names = experiment_benchmarks(config, wildcards.model, wildcards.dataset)
    return {name: config["benchmarks"][name] for name in names}


def prepared_benchmarks(wildcards):
    """The prepared problems of the experiment's benchmarks (a held-out benchmark's come with the
    dataset's splits)."""
    inputs = {}
    for name, spec in experiment_benchmark_specs(wildcards).items():
        if spec["source"] != "held_out":
            inputs[f"benchmark_{name}"] = f"results/benchmarks/{name}/problems.jsonl"
            inputs[f"benchmark_{name}_manifest"] = f"results/benchmarks/{name}/manifest.json"
    return inputs


def cell_base(wildcards):
    """The replicate folder of the base model a cell's seed starts from (`base_replicate`)."""
    replicate = base_replicate(int(wildcards.seed), not config["base_per_seed"])
    return f"{wildcards.model}/{wildcards.dataset}/{replicate}"


def base_checkpoint(wildcards):
    return f"results/models/{cell_base(wildcards)}/base"


def base_capture(wildcards):
    return f"results/activations/{cell_base(wildcards)}/base.h5"


def lora_base_input(wildcards):
    """A LoRA cell's checkpoints hold only adapters: loading them needs the base checkpoint."""
    if model_spec(wildcards)["lora"].get("enabled"):
        return {"base": base_checkpoint(wildcards)}
    return {}


# Keys of a model spec that change how a job runs, not what it computes: changing them reruns
# nothing (jobs read them from the config).
EXECUTION_KEYS = ("threads", "resources", "gradient_checkpointing", "sharding")


def base_params(wildcards):
    """The model spec and the seed of the base's replicate; `replicate` (s<seed>, or shared by
    every seed) lands in the base's provenance."""
    spec = {k: v for k, v in model_spec(wildcards).items() if k not in EXECUTION_KEYS}
    return canonical(
        {"spec": spec, "seed": replicate_seed(config, wildcards.replicate), "replicate": wildcards.replicate}
    )


def import_params(wildcards):
    spec = model_spec(wildcards)
    return canonical({"spec": {k: spec[k] for k in ("source", "gguf_package", "gguf_file")}})


def unlearn_params(wildcards):
    return canonical(
        {
            "method": wildcards.method,
            "hyperparameters": method_hyperparameters(wildcards.method),
            "n_requests": int(wildcards.n),
            "learning_rate": float(wildcards.lr),
            "unlearning": config["unlearning"],
            # Only the baseline's cells depend on the baseline's data.
            "baseline": config["baseline"] if wildcards.method == "finetune" else None,
            "curves": config["curves"],
            "lora": model_spec(wildcards)["lora"],
            "max_length": model_spec(wildcards)["max_length"],
            "dtype": model_spec(wildcards)["dtype"],
            "seed": replicate_seed(config, wildcards.seed),
            "cell": GRID_POINT.format(**wildcards),
        }
    )


def method_hyperparameters(method):
    from reversibility.methods import hyperparameters

    return hyperparameters(method, config["methods"].get(method))


def relearn_params(wildcards):
    return canonical(
        {
            "n_requests": int(wildcards.n),
            "relearning": config["relearning"],
            "quantization": config["quantization"],
            "curves": config["curves"],
            "capture_config": config["capture"],
            "benchmarks": experiment_benchmark_specs(wildcards),
            "max_length": model_spec(wildcards)["max_length"],
            "dtype": model_spec(wildcards)["dtype"],
            "seed": replicate_seed(config, wildcards.seed),
            "cell": GRID_POINT.format(**wildcards),
        }
    )


def capture_params(wildcards):
    return canonical(
        {
            "capture_config": config["capture"],
            "benchmarks": experiment_benchmark_specs(wildcards),
            "max_length": model_spec(wildcards)["max_length"],
            "dtype": model_spec(wildcards)["dtype"],
        }
    )


def diagnostics_params(wildcards):
    return canonical(config["diagnostics"])


def metrics_params(wildcards):
    return canonical(config["metrics"])
