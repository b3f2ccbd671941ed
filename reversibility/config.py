"""Checks and helpers on a validated config (the JSON schema has already filled defaults).

The schema rejects wrong types and unknown keys; these checks catch what a schema cannot see:
references between sections, methods that exist in code, sizes that cannot fit, and model
folders that would run code (remote code without opt-in, pickled weights).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from itertools import product
from pathlib import Path
from typing import Any, Iterator, Mapping

from .sources import template_fields

# A model's stages in a cell: the base it starts from, then the model after unlearning and after
# relearning. The cell's jobs make the last two; the base is shared by every cell of its pair.
STAGES = ("base", "unlearned", "relearned")
CELL_STAGES = STAGES[1:]


class ConfigError(ValueError):
    """A config that cannot run; the message names the key."""


@dataclass(frozen=True)
class Cell:
    model: str
    dataset: str
    method: str
    n_requests: int
    learning_rate: float
    seed: int = 0
    shared_base: bool = False

    @property
    def grid_point(self) -> str:
        """The cell without its replicate: {model}/{dataset}/{method}/n{N}/lr{lr}."""
        return f"{self.model}/{self.dataset}/{self.method}/n{self.n_requests}/lr{lr_label(self.learning_rate)}"

    @property
    def key(self) -> str:
        """The cell's path below results/runs/: {grid_point}/s{seed}."""
        return f"{self.grid_point}/s{self.seed}"

    @property
    def base_key(self) -> str:
        """The path of the base model the cell starts from, below results/models/:
        {model}/{dataset}/{replicate} (`base_replicate`)."""
        return f"{self.model}/{self.dataset}/{base_replicate(self.seed, self.shared_base)}"


def base_replicate(seed: int, shared: bool) -> str:
    """The replicate folder of a base model: `shared` when every seed starts from one base, else
    `s<seed>`."""
    return "shared" if shared else f"s{seed}"


def replicate_seed(config: Mapping[str, Any], replicate: str | int) -> int:
    """The global seed the jobs of a replicate derive theirs from: `seed + s` for seed s of
    `seeds` (so seed 0 runs the jobs of a single-seed run), and `seed` itself for a shared base.
    The data splits are drawn from `seed` alone: every replicate forgets the same samples."""
    if replicate == "shared":
        return config["seed"]
    return config["seed"] + int(str(replicate).removeprefix("s"))


def lr_label(learning_rate: float) -> str:
    """The learning rate as it appears in paths: shortest %g form (1e-05, 0.0001, 0.001)."""
    return f"{float(learning_rate):g}"


def canonical(value: Any) -> Any:
    """The value with every mapping's keys sorted, recursively.

    Snakemake reruns a job when the repr of its params changes; sorting makes that repr depend
    on the values only, not on the order of keys in a YAML file.
    """
    if isinstance(value, Mapping):
        return {key: canonical(value[key]) for key in sorted(value)}
    if isinstance(value, (list, tuple)):
        return [canonical(item) for item in value]
    return value


def grid_blocks(config: Mapping[str, Any], experiment: Mapping[str, Any]) -> list[Mapping[str, list]]:
    """The experiment's grid (its own, or the global one) as a list of cross products."""
    grid = experiment.get("grid", config["grid"])
    return list(grid) if isinstance(grid, list) else [grid]


def cells(config: Mapping[str, Any]) -> Iterator[Cell]:
    """Every grid cell once, experiment by experiment, in the order the blocks list them, each
    grid point once per seed of `seeds` (the innermost loop)."""
    shared = not config["base_per_seed"]
    for experiment in config["experiments"]:
        seen = set()
        for block in grid_blocks(config, experiment):
            for method, n, lr, seed in product(
                block["methods"], block["n_requests"], block["learning_rates"], config["seeds"]
            ):
                cell = Cell(experiment["model"], experiment["dataset"], method, n, lr, seed, shared)
                if cell not in seen:
                    seen.add(cell)
                    yield cell


def check(config: Mapping[str, Any]) -> None:
    """Raise ConfigError, naming the key, for a config that cannot run to the end."""
    _check_finite(config, "")
    for index, experiment in enumerate(config["experiments"]):
        for section, name in (("models", experiment["model"]), ("datasets", experiment["dataset"])):
            _check_defined(config, section, name, f"experiments[{index}].{section[:-1]}")
        key = f"experiments[{index}].grid" if "grid" in experiment else "grid"
        for block in grid_blocks(config, experiment):
            _check_grid(config, block, experiment["dataset"], key)
    for name, configured in config["methods"].items():
        _check_method(name, "methods")
        _check_hyperparameters(name, configured)
    for name, spec in config["datasets"].items():
        _check_dataset(name, spec)
    for name, spec in config["models"].items():
        _check_model(name, spec)
    for section in ("relearning", "baseline"):
        source_dataset = config[section]["source_dataset"]
        if source_dataset is not None:
            _check_defined(config, "datasets", source_dataset, f"{section}.source_dataset")
    for index, experiment in enumerate(config["experiments"]):
        _check_sizes(config, experiment, index)
        _check_benchmarks(config, experiment, index)
        _check_layers(config, experiment, index)


def experiment_benchmarks(config: Mapping[str, Any], model: str, dataset: str) -> list[str]:
    """The benchmarks evaluated on the models of (model, dataset), in the order experiments name them."""
    names: list[str] = []
    for experiment in config["experiments"]:
        if (experiment["model"], experiment["dataset"]) == (model, dataset):
            names += [name for name in experiment.get("benchmarks", []) if name not in names]
    return names


def generation_budget(config: Mapping[str, Any], model: str, dataset: str) -> int:
    """The most tokens a capture of (model, dataset) generates for one problem (0: none)."""
    return max(
        (config["benchmarks"][name]["max_new_tokens"] for name in experiment_benchmarks(config, model, dataset)),
        default=0,
    )


def model_positions(spec: Mapping[str, Any]) -> int | None:
    """The positions of a model built from scratch (a pretrained model's are known once loaded)."""
    return (spec["max_positions"] or spec["max_length"]) if spec["source"] == "scratch" else None


def _check_finite(value: Any, key: str) -> None:
    """NaN and infinity pass a schema's range checks (every comparison with NaN is false)."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{key}: {value} is not a finite number")
    if isinstance(value, Mapping):
        for name, item in value.items():
            _check_finite(item, f"{key}.{name}" if key else str(name))
    elif isinstance(value, (list, tuple)):
        for position, item in enumerate(value):
            _check_finite(item, f"{key}[{position}]")


def _check_hyperparameters(method: str, configured: Mapping[str, Any]) -> None:
    from .methods import get_method

    known = get_method(method).defaults
    for name in configured:
        if name not in known:
            raise ConfigError(
                f"methods.{method}.{name}: method {method!r} has no hyperparameter {name!r}; "
                f"it has: {', '.join(sorted(known)) or 'none'}"
            )


def _check_model(name: str, spec: Mapping[str, Any]) -> None:
    """Shapes that can be built, sources that name what they need; model code and pickles never
    run without an explicit opt-in."""
    key = f"models.{name}"
    if spec["max_length"] < 2:
        raise ConfigError(
            f"{key}.max_length: {spec['max_length']} token cannot hold a token of text after the "
            "BOS token (a sample needs at least one target); use at least 2"
        )
    if spec["source"] == "scratch" and spec["hidden_size"] % spec["num_heads"]:
        raise ConfigError(
            f"{key}.hidden_size: {spec['hidden_size']} is not divisible by num_heads = "
            f"{spec['num_heads']} (each attention head takes an equal share of the width)"
        )
    _check_sharding(key, spec)
    required = {"hub": ("hub_id",), "local": ("path",), "gguf": ("gguf_package", "gguf_file")}
    for field in required.get(spec["source"], ()):
        if not spec[field]:
            raise ConfigError(f"{key}.{field}: source {spec['source']!r} needs it")
    if (
        spec["trust_remote_code"]
        and spec["source"] == "hub"
        and not re.fullmatch(r"[0-9a-f]{40}", spec["revision"] or "")
    ):
        raise ConfigError(
            f"{key}.revision: trust_remote_code runs the repository's Python code, so it needs a "
            f"pinned 40-character commit hash, not {spec['revision']!r}"
        )
    if spec["source"] == "local" and Path(spec["path"]).is_dir():
        folder = Path(spec["path"])
        model_config = folder / "config.json"
        if (
            not spec["trust_remote_code"]
            and model_config.is_file()
            and "auto_map" in json.loads(model_config.read_text())
        ):
            raise ConfigError(
                f"{key}.trust_remote_code: {model_config} maps the model to its own Python code "
                "(auto_map); set trust_remote_code: true only if you trust that code"
            )
        pickled = [*folder.glob("*.bin"), *folder.glob("*.pt"), *folder.glob("*.pth")]
        if pickled and not any(folder.glob("*.safetensors")):
            raise ConfigError(
                f"{key}.path: {folder} holds pickled weights (.bin/.pt), which can run code when "
                "loaded; convert them to safetensors first"
            )


def sharding_processes(spec: Mapping[str, Any]) -> int:
    """The processes each training job of a model spec runs as (1: not sharded)."""
    sharding = spec["sharding"]
    if not sharding["enabled"]:
        return 1
    return sharding["processes"] or spec["resources"]["gpu"]


def _check_sharding(key: str, spec: Mapping[str, Any]) -> None:
    sharding, gpus = spec["sharding"], spec["resources"]["gpu"]
    if not sharding["enabled"]:
        return
    if spec["lora"]["enabled"]:
        raise ConfigError(
            f"{key}.sharding.enabled: sharding is for full fine-tuning; a LoRA adapter trains on one "
            f"GPU (set {key}.lora.enabled: false, or sharding.enabled: false)"
        )
    processes = sharding_processes(spec)
    if processes < 2:
        raise ConfigError(
            f"{key}.sharding.processes: sharding needs at least 2 processes; got {processes} "
            f"(set sharding.processes, or resources.gpu, which it defaults to)"
        )
    if gpus and processes != gpus:
        raise ConfigError(
            f"{key}.sharding.processes: {processes} processes on resources.gpu = {gpus} GPUs; "
            "a sharded job runs one process per GPU"
        )
    if spec["threads"] < processes:
        raise ConfigError(
            f"{key}.threads: {spec['threads']} CPU threads for {processes} sharded processes; "
            f"each process needs at least one (threads >= {processes})"
        )


def _check_defined(config, section: str, name: str, key: str) -> None:
    if name not in config[section]:
        raise ConfigError(
            f"{key}: {name!r} is not defined under '{section}' "
            f"(defined: {', '.join(sorted(config[section])) or 'none'})"
        )


def _check_grid(config, grid: Mapping[str, list], dataset_name: str, key: str) -> None:
    for name in grid["methods"]:
        _check_method(name, f"{key}.methods")
    dataset = config["datasets"][dataset_name]
    largest = max(grid["n_requests"])
    if largest > dataset["forget_requests"]:
        raise ConfigError(
            f"{key}.n_requests: N = {largest} needs {largest} requests but dataset {dataset_name!r} "
            f"holds datasets.{dataset_name}.forget_requests = {dataset['forget_requests']}"
        )
    labels: dict[str, float] = {}
    for lr in grid["learning_rates"]:
        if labels.setdefault(lr_label(lr), lr) != lr:
            raise ConfigError(
                f"{key}.learning_rates: {lr} and {labels[lr_label(lr)]} share the path label "
                f"lr{lr_label(lr)}; use values that differ in the first six digits"
            )


def _check_layers(config: Mapping[str, Any], experiment: Mapping[str, Any], index: int) -> None:
    """A method's `layer` hyperparameter (RMU's) against the depth of a model built from scratch;
    a pretrained model's depth is known once loaded, and its unlearning refuses a layer it lacks."""
    from .methods import hyperparameters

    model_name = experiment["model"]
    spec = config["models"][model_name]
    if spec["source"] != "scratch":
        return
    count = spec["num_layers"]
    for method in sorted({method for block in grid_blocks(config, experiment) for method in block["methods"]}):
        layer = hyperparameters(method, config["methods"].get(method)).get("layer")
        if layer is not None and not (float(layer).is_integer() and 0 <= layer < count):
            raise ConfigError(
                f"methods.{method}.layer: {layer} is not a decoder layer of model {model_name!r} "
                f"(experiments[{index}]), which has models.{model_name}.num_layers = {count}: layers 0 to "
                f"{count - 1}; set e.g. `methods: {{{method}: {{layer: {count // 2}}}}}`"
            )


def _check_method(name: str, key: str) -> None:
    from .methods import METHODS

    if name not in METHODS:
        raise ConfigError(f"{key}: unknown method {name!r}; known: {', '.join(sorted(METHODS))}")


def _check_dataset(name: str, spec: Mapping[str, Any]) -> None:
    key = f"datasets.{name}"
    if spec["min_chars"] > spec["max_chars"]:
        raise ConfigError(f"{key}.min_chars: {spec['min_chars']} is above max_chars = {spec['max_chars']}")
    source = spec["source"]
    if source == "hub" and not spec["hub_id"]:
        raise ConfigError(f"{key}.hub_id: source 'hub' needs a dataset id")
    if source in ("json", "parquet", "text") and not spec["files"]:
        raise ConfigError(f"{key}.files: source {source!r} needs at least one file")
    if source in ("hub", "json", "parquet") and not spec["text"]:
        raise ConfigError(
            f"{key}.text: source {source!r} needs a template of the columns that make a "
            "document, e.g. 'Problem: {problem}\\nSolution: {solution}'"
        )
    if spec["math_eval"] and source != "gsm_symbolic":
        raise ConfigError(f"{key}.math_eval: held-out math problems come from source 'gsm_symbolic' only")


def _check_sizes(config: Mapping[str, Any], experiment: Mapping[str, Any], index: int) -> None:
    """Every amount of data a job of the experiment draws, against what the config's splits hold,
    so that no job fails on a size after the jobs before it were paid for."""
    from .methods import METHODS

    name, model_name = experiment["dataset"], experiment["model"]
    dataset, model = config["datasets"][name], config["models"][model_name]
    blocks = grid_blocks(config, experiment)
    n_values = sorted({n for block in blocks for n in block["n_requests"]})
    methods = {method for block in blocks for method in block["methods"]}
    size = dataset["request_size"]
    largest, smallest = n_values[-1] * size, n_values[0] * size
    pool = dataset["forget_requests"] * size
    where = f" (experiments[{index}]: {model_name} on {name})"

    def held(dataset_name: str, split: str) -> int:
        spec = config["datasets"][dataset_name]
        return spec["forget_requests"] * spec["request_size"] if split == "forget" else spec[split]

    def require(wanted: int, available: int, message: str) -> None:
        if wanted > available:
            raise ConfigError(message.format(wanted=wanted, available=available) + where)

    # The unseen split's roles (cell_data.py): [0, N s) the control, [N s, 2 N s) relearning on
    # it, [2 N s, end) the baseline on it; each must be there at every N.
    relearning = config["relearning"]
    require(
        largest,
        dataset["unseen"],
        f"datasets.{name}.unseen: the relearning control at N = {n_values[-1]} is as many never-seen "
        f"samples as the cell forgot (N x request_size = {n_values[-1]} x {size} = {{wanted}}), but the "
        "split holds {available}",
    )
    source = relearning["source_dataset"] or name
    if relearning["source"] == "unseen" and source == name:
        require(
            2 * largest,
            dataset["unseen"],
            f"relearning.source: relearning on the unseen split at N = {n_values[-1]} takes {largest} samples "
            f"beside the {largest} of the control, disjoint from them ({{wanted}} in all), but "
            f"datasets.{name}.unseen = {{available}}",
        )
    elif relearning["source"] != "forget" or source != name:
        require(
            largest,
            held(source, relearning["source"]),
            f"relearning.source: relearning at N = {n_values[-1]} on the {relearning['source']} split of "
            f"{source!r} takes as many samples as the cell forgot ({{wanted}}), but it holds {{available}}",
        )
    if relearning["held_out"] and relearning["source"] == "forget" and source == name and n_values[0] == 1:
        require(
            2,
            size,
            f"relearning.held_out: held-out recovery at N = 1 splits the request in a relearned and a held-out "
            f"part of at least one sample each ({{wanted}} samples), but datasets.{name}.request_size = {{available}}",
        )
    require(
        relearning["batch_size"],
        smallest,
        f"relearning.batch_size: a batch of {{wanted}} samples cannot be filled from the {{available}} "
        f"samples forgotten at N = {n_values[0]}",
    )

    batch = config["unlearning"]["retain_batch_size"]
    if any(METHODS[m].uses_retain for m in methods if m != "finetune"):
        require(
            batch,
            dataset["retain"],
            f"unlearning.retain_batch_size: a retain batch of {{wanted}} samples cannot be filled from "
            f"datasets.{name}.retain = {{available}}",
        )
    baseline_n = [n for block in blocks if "finetune" in block["methods"] for n in block["n_requests"]]
    if baseline_n:
        baseline = config["baseline"]
        source = baseline["source_dataset"] or name
        if baseline["source"] == "unseen" and source == name:
            reserved = 2 * max(baseline_n) * size
            require(
                batch,
                dataset["unseen"] - reserved,
                f"baseline.source: the baseline at N = {max(baseline_n)} trains on the unseen samples after the "
                f"{reserved} that its control and relearning may use; a batch of {{wanted}} "
                f"(unlearning.retain_batch_size) cannot be filled from the {{available}} left of "
                f"datasets.{name}.unseen = {dataset['unseen']}",
            )
        else:
            require(
                batch,
                held(source, baseline["source"]),
                f"baseline.source: a fine-tuning batch of {{wanted}} samples (unlearning.retain_batch_size) "
                f"cannot be filled from the {baseline['source']} split of {source!r}, which holds {{available}}",
            )

    training = model["base_training"]
    if training["epochs"]:
        require(
            training["batch_size"],
            pool + dataset["retain"] + dataset["retain_eval"],
            f"models.{model_name}.base_training.batch_size: a batch of {{wanted}} samples cannot be filled "
            f"from the {{available}} forget, retain and retain_eval samples of {name!r}",
        )
    require(
        config["capture"]["fisher_samples"],
        pool,
        f"capture.fisher_samples: the Fisher on {{wanted}} forget samples needs more than the forget pool "
        f"of {name!r} holds ({{available}})",
    )
    for section in ("capture", "curves"):
        require(
            config[section]["retain_samples"],
            dataset["retain_eval"],
            f"{section}.retain_samples: {{wanted}} retain samples are more than datasets.{name}.retain_eval = "
            "{available} (retain accuracy is measured on samples no stage after the base model trains on)",
        )


def _check_benchmarks(config: Mapping[str, Any], experiment: Mapping[str, Any], index: int) -> None:
    """Benchmarks that exist, can be read, hold the problems asked, and whose prompt and
    generation budget fit in the model's positions."""
    key = f"experiments[{index}].benchmarks"
    dataset_name, model_name = experiment["dataset"], experiment["model"]
    dataset, model = config["datasets"][dataset_name], config["models"][model_name]
    positions = model_positions(model)
    if positions is not None and positions < model["max_length"]:
        raise ConfigError(
            f"models.{model_name}.max_positions: {positions} positions cannot hold "
            f"max_length = {model['max_length']} tokens"
        )
    for name in experiment.get("benchmarks", []):
        _check_defined(config, "benchmarks", name, key)
        spec, where = config["benchmarks"][name], f"benchmarks.{name}"
        needs = {"hub": ("hub_id",), "json": ("files",), "parquet": ("files",)}.get(spec["source"], ())
        for field in needs:
            if not spec[field]:
                raise ConfigError(f"{where}.{field}: source {spec['source']!r} needs it")
        unknown = sorted(template_fields(spec["prompt"]) - {"question"})
        if unknown:
            raise ConfigError(f"{where}.prompt: the template may use {{question}} only, not {{{unknown[0]}}}")
        if spec["source"] == "held_out":
            held = dataset["math_eval"]
            if not held:
                raise ConfigError(
                    f"{key}: {name!r} reads the held-out problems of {dataset_name!r}, but "
                    f"datasets.{dataset_name}.math_eval = 0 (a gsm_symbolic source holds them)"
                )
            if spec["problems"] is not None and spec["problems"] > held:
                raise ConfigError(
                    f"{where}.problems: {spec['problems']} problems asked, but "
                    f"datasets.{dataset_name}.math_eval = {held}"
                )
        if positions is not None and spec["max_new_tokens"] + 2 > positions:
            raise ConfigError(
                f"{where}.max_new_tokens: a generation budget of {spec['max_new_tokens']} tokens "
                f"leaves no room for a prompt in the {positions} positions of models.{model_name} "
                f"(max_positions, or max_length = {model['max_length']}); lower it or raise "
                "max_positions"
            )
