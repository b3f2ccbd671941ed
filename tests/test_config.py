"""A bad config is rejected before any job runs, with a message that names the key."""

import pytest
from conftest import REPO, plan, run_snakemake

from reversibility.config import canonical, lr_label


def rejection(workdir, config) -> str:
    with pytest.raises(Exception) as caught:
        plan(workdir, config)
    text = str(caught.value)
    cause = caught.value.__cause__ or caught.value.__context__
    return f"{text} {cause or ''}"


def test_unknown_method_is_named(tmp_path, micro_config):
    micro_config["grid"]["methods"] = ["ga", "forgetful"]
    message = rejection(tmp_path, micro_config)
    assert "grid.methods" in message and "'forgetful'" in message


def test_negative_learning_rate_is_named(tmp_path, micro_config):
    micro_config["grid"]["learning_rates"] = [-1e-3]
    message = rejection(tmp_path, micro_config)
    assert "learning_rates" in message and "-0.001" in message


def test_more_requests_than_the_forget_pool_holds_is_named(tmp_path, micro_config):
    micro_config["grid"]["n_requests"] = [1, 3]
    message = rejection(tmp_path, micro_config)
    assert "grid.n_requests" in message and "forget_requests = 2" in message


def test_unknown_key_is_named(tmp_path, micro_config):
    micro_config["unlearning"]["step_per_request"] = 3
    assert "step_per_request" in rejection(tmp_path, micro_config)


def test_undefined_dataset_of_an_experiment_is_named(tmp_path, micro_config):
    micro_config["experiments"][0]["dataset"] = "arxiv"
    message = rejection(tmp_path, micro_config)
    assert "experiments[0].dataset" in message and "'arxiv'" in message


def test_a_name_that_would_escape_its_folder_is_rejected(tmp_path, micro_config):
    micro_config["datasets"]["../evil"] = micro_config["datasets"].pop("github")
    micro_config["experiments"][0]["dataset"] = "../evil"
    assert "../evil" in rejection(tmp_path, micro_config)


def test_schema_fills_defaults(tmp_path, micro_config):
    """The micro config omits most keys; a dry run with it plans the whole workflow."""
    planned = plan(tmp_path, micro_config)
    assert "results/tables/metrics.csv" in planned
    assert "results/models/micro/github/s0/base" in planned


def test_the_command_line_stops_before_any_job(tmp_path, micro_config):
    import yaml

    micro_config["grid"]["methods"] = ["forgetful"]
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(micro_config))
    result = run_snakemake(tmp_path, "--cores", "1")
    assert result.returncode != 0
    assert "unknown method 'forgetful'" in result.stdout + result.stderr
    assert not (tmp_path / "results").exists()


def test_params_do_not_depend_on_key_order():
    assert repr(canonical({"b": 1, "a": {"d": 2, "c": [3, {"f": 4, "e": 5}]}})) == repr(
        canonical({"a": {"c": [3, {"e": 5, "f": 4}], "d": 2}, "b": 1})
    )


def test_learning_rate_labels_are_short_and_exact():
    assert [lr_label(x) for x in (1e-5, 1e-4, 3e-4, 1e-3)] == ["1e-05", "0.0001", "0.0003", "0.001"]
    assert float(lr_label(2.5e-5)) == 2.5e-5


def test_an_experiment_can_have_its_own_grid(tmp_path, micro_config):
    micro_config["experiments"][0]["grid"] = {"methods": ["ga"], "n_requests": [1], "learning_rates": [1e-3]}
    planned = plan(tmp_path, micro_config)
    assert "results/runs/micro/github/ga/n1/lr0.001/s0/unlearned" in planned
    assert not [p for p in planned if "lr0.003" in p or "/n2/" in p]


def test_a_grid_can_be_a_union_of_cross_products(micro_config):
    from snakemake.utils import validate

    from reversibility.config import cells

    micro_config["grid"] = [
        {"methods": ["ga", "npo"], "n_requests": [2], "learning_rates": [1e-3]},
        {"methods": ["ga"], "n_requests": [1, 2], "learning_rates": [1e-3, 1e-2]},
    ]
    validate(micro_config, str(REPO / "workflow" / "schemas" / "config.schema.yaml"))
    keys = [c.key for c in cells(micro_config)]
    assert keys == [
        "micro/github/ga/n2/lr0.001/s0",
        "micro/github/npo/n2/lr0.001/s0",
        "micro/github/ga/n1/lr0.001/s0",
        "micro/github/ga/n1/lr0.01/s0",
        "micro/github/ga/n2/lr0.01/s0",
    ]


def test_seeds_replicate_every_grid_point_from_a_base_per_seed_or_a_shared_one(micro_config):
    from snakemake.utils import validate

    from reversibility.config import cells, replicate_seed

    micro_config["grid"] = {"methods": ["ga"], "n_requests": [2], "learning_rates": [1e-3, 1e-2]}
    micro_config.update(seed=7, seeds=[0, 2])
    validate(micro_config, str(REPO / "workflow" / "schemas" / "config.schema.yaml"))
    grid = list(cells(micro_config))
    assert [c.key for c in grid] == [
        "micro/github/ga/n2/lr0.001/s0",
        "micro/github/ga/n2/lr0.001/s2",
        "micro/github/ga/n2/lr0.01/s0",
        "micro/github/ga/n2/lr0.01/s2",
    ]
    assert [c.base_key for c in grid[:2]] == ["micro/github/s0", "micro/github/s2"]
    # Replicate s of seed 7 runs its jobs from 7 + s: seed 0 is the single-seed run.
    assert [replicate_seed(micro_config, r) for r in ("s0", "s2", "shared")] == [7, 9, 7]
    micro_config["base_per_seed"] = False
    assert {c.base_key for c in cells(micro_config)} == {"micro/github/shared"}


def test_seeds_are_distinct_non_negative_integers(tmp_path, micro_config):
    micro_config["seeds"] = [0, 0]
    assert "seeds" in rejection(tmp_path, micro_config)
    micro_config["seeds"] = []
    assert "seeds" in rejection(tmp_path, micro_config)


def test_an_experiment_grid_is_checked_under_its_own_key(tmp_path, micro_config):
    micro_config["experiments"][0]["grid"] = {"methods": ["ga"], "n_requests": [9], "learning_rates": [1e-3]}
    assert "experiments[0].grid.n_requests" in rejection(tmp_path, micro_config)


def test_rmu_at_a_layer_the_micro_model_has_plans(tmp_path, micro_config):
    micro_config["grid"]["methods"] = ["rmu"]
    micro_config["methods"] = {"rmu": {"layer": 1}}
    assert any("/rmu/" in path for path in plan(tmp_path, micro_config))


def test_an_unknown_relearning_source_dataset_is_named(tmp_path, micro_config):
    micro_config["relearning"] = {"source": "unseen", "source_dataset": "arxiv"}
    message = rejection(tmp_path, micro_config)
    assert "relearning.source_dataset" in message and "'arxiv'" in message


def test_a_hub_dataset_without_a_text_template_is_named(tmp_path, micro_config):
    micro_config["datasets"]["github"] = {"source": "hub", "hub_id": "AI-MO/NuminaMath-CoT"}
    assert "datasets.github.text" in rejection(tmp_path, micro_config)


# Overlays are read on top of the config they name (as their header says).
OVERLAYS = {"smollm2-slice.yaml": "configs/smollm2.yaml", "replicates.yaml": "config.yaml"}
SHIPPED = ["config.yaml", *sorted(f"configs/{p.name}" for p in (REPO / "configs").glob("*.yaml"))]


def shipped_config(relative: str) -> dict:
    import yaml

    path = REPO / relative
    config = yaml.safe_load(path.read_text())
    if path.name in OVERLAYS:
        config = {**yaml.safe_load((REPO / OVERLAYS[path.name]).read_text()), **config}
    return config


@pytest.mark.parametrize("relative", SHIPPED)
def test_every_shipped_config_passes_the_checks_and_plans_to_the_tables(relative, tmp_path):
    """The checks see the whole config before any job (sizes of every N of every experiment
    included), and the dry run plans every cell."""
    from snakemake.utils import validate

    from reversibility.config import cells, check

    config = shipped_config(relative)
    validate(config, str(REPO / "workflow" / "schemas" / "config.schema.yaml"))
    check(config)
    planned = plan(tmp_path, config)
    assert "results/tables/metrics.csv" in planned
    assert all(f"results/runs/{cell.key}/relearned" in planned for cell in cells(config))


def test_a_benchmark_is_prepared_once_and_drawn_only_for_its_experiment(tmp_path, micro_config):
    micro_config["benchmarks"] = {"gsm8k": {"source": "json", "files": ["gsm8k.jsonl"], "max_new_tokens": 16}}
    micro_config["experiments"].append({"model": "micro", "dataset": "arxiv", "benchmarks": ["gsm8k"]})
    micro_config["datasets"]["arxiv"] = dict(micro_config["datasets"]["github"])
    (tmp_path / "gsm8k.jsonl").write_text('{"question": "1 + 1?", "answer": "#### 2"}\n')
    inputs = []
    planned = plan(tmp_path, micro_config, inputs=inputs)
    assert "results/benchmarks/gsm8k/problems.jsonl" in planned
    assert "results/figures/micro/arxiv/benchmark_accuracy.png" in planned
    assert not any("github/benchmark_accuracy" in path for path in planned)
    for rule, declared in inputs:
        if rule in ("capture_base", "relearn"):
            assert ("results/benchmarks/gsm8k/problems.jsonl" in declared) == any("/arxiv/" in p for p in declared)


def test_the_paper_config_plans_its_whole_grid_offline(tmp_path):
    import yaml

    paper = yaml.safe_load((REPO / "configs" / "paper.yaml").read_text())
    planned = plan(tmp_path, paper)
    ids = {spec["hub_id"] for spec in paper["datasets"].values()}
    assert {"ccdv/arxiv-summarization", "codeparrot/codeparrot-clean-valid", "AI-MO/NuminaMath-CoT"} == ids
    assert "results/runs/yi-6b/github/npo/n100/lr1e-05/s0/unlearned" in planned
    assert "results/models/yi-6b/github/shared/base" in planned
    assert "results/runs/qwen2.5-7b/numinamath/ga/n1/lr0.0001/s0/relearned" in planned
    assert {"results/benchmarks/gsm8k/problems.jsonl", "results/benchmarks/math500/problems.jsonl"} <= set(planned)
    assert "results/figures/qwen2.5-7b/numinamath/benchmark_accuracy.png" in planned


def test_the_paper_config_asks_for_gpus_only_where_models_run(tmp_path):
    import yaml

    jobs = []
    plan(tmp_path, yaml.safe_load((REPO / "configs" / "paper.yaml").read_text()), jobs=jobs)
    gpu_rules = {"base_model", "unlearn", "relearn", "capture_base"}
    assert {name for name, _ in jobs} >= gpu_rules | {"metrics", "diagnostics", "tables", "figures"}
    for name, resources in jobs:
        if name in gpu_rules:
            assert resources["gpu"] == 1 and resources["mem_mb"] == 64000 and resources["runtime"] == 720, name
        else:
            assert not resources.get("gpu"), name


def test_the_paper_configs_sharded_variants_ask_for_a_node_of_gpus_where_they_train(tmp_path):
    import yaml

    paper = yaml.safe_load((REPO / "configs" / "paper.yaml").read_text())
    for experiment in paper["experiments"]:
        experiment["model"] += "-sharded"
    jobs = []
    plan(tmp_path, paper, jobs=jobs)
    assert {"results/runs/yi-6b-sharded/arxiv/npo/n100/lr1e-05/s0/relearned"} <= set(plan(tmp_path, paper))
    for name, resources in jobs:
        if name in {"base_model", "unlearn", "relearn"}:
            assert resources["gpu"] == 4 and resources["mem_mb"] >= 160000, (name, resources)
        elif name == "capture_base":  # one process, one device
            assert resources["gpu"] == 1, resources


# ----------------------------------------------------------------------------- a catalogue of bad configs
# Each case breaks one thing; the dry run must stop before any job with a message naming it.


def _rename_dataset(config, name):
    config["datasets"][name] = config["datasets"].pop("github")
    config["experiments"][0]["dataset"] = name


def _second_dataset(config, **sizes):
    config["datasets"]["arxiv"] = {**config["datasets"]["github"], **sizes}


def _benchmark(config, **spec):
    config["benchmarks"] = {"gsm8k": {"source": "json", "files": ["gsm8k.jsonl"], **spec}}
    config["experiments"][0]["benchmarks"] = ["gsm8k"]


def _local_model(config, tmp_path, files):
    folder = tmp_path / "saved-model"
    folder.mkdir()
    for filename, text in files.items():
        (folder / filename).write_text(text)
    config["models"]["micro"] = {"source": "local", "path": str(folder)}


def _sharded(config, **spec):
    config["models"]["micro"].update({"threads": 2, "sharding": {"enabled": True, "processes": 2}, **spec})


BAD_CONFIGS = {
    "learning rate of the wrong type": (lambda c, _: c["grid"].update(learning_rates=["fast"]), ["'fast'"]),
    "steps of the wrong type": (lambda c, _: c["relearning"].update(steps=2.5), ["2.5"]),
    "seed of the wrong type": (lambda c, _: c.update(seed="zero"), ["'zero'"]),
    "unknown top-level key": (lambda c, _: c.update(gird={}), ["'gird'"]),
    "unknown key in a model": (lambda c, _: c["models"]["micro"].update(hiden_size=8), ["hiden_size"]),
    "unknown method": (lambda c, _: c["grid"].update(methods=["ga", "forgetful"]), ["grid.methods", "'forgetful'"]),
    "empty list of methods": (lambda c, _: c["grid"].update(methods=[]), ["[]"]),
    "no experiments": (lambda c, _: c.update(experiments=[]), ["[]"]),
    "zero requests": (lambda c, _: c["grid"].update(n_requests=[0]), ["0"]),
    "more requests than the pool": (
        lambda c, _: c["grid"].update(n_requests=[3]),
        ["grid.n_requests", "forget_requests = 2"],
    ),
    "empty requests": (lambda c, _: c["datasets"]["github"].update(request_size=0), ["request_size", "0"]),
    "shortest sample above the longest": (
        lambda c, _: c["datasets"]["github"].update(min_chars=500),
        ["datasets.github.min_chars", "max_chars"],
    ),
    "quantization below two bits": (lambda c, _: c.update(quantization={"bits": [1]}), ["bits", "1"]),
    "learning rates sharing a path label": (
        lambda c, _: c["grid"].update(learning_rates=[1e-3, 1.0000001e-3]),
        ["share the path label"],
    ),
    "undefined dataset": (
        lambda c, _: c["experiments"][0].update(dataset="arxiv"),
        ["experiments[0].dataset", "'arxiv'"],
    ),
    "path separator in a dataset name": (lambda c, _: _rename_dataset(c, "code/python"), ["code/python"]),
    "parent folder as a dataset name": (lambda c, _: _rename_dataset(c, ".."), ["'..'"]),
    "shell metacharacters in a dataset name": (lambda c, _: _rename_dataset(c, "x;rm -rf ~"), ["x;rm -rf ~"]),
    "space in a model name": (
        lambda c, _: (
            c["models"].update({"my model": c["models"].pop("micro")}),
            c["experiments"][0].update(model="my model"),
        ),
        ["my model"],
    ),
    "remote code at a moving revision": (
        lambda c, _: c["models"].update(
            micro={"source": "hub", "hub_id": "someone/custom-model", "trust_remote_code": True, "revision": "main"}
        ),
        ["models.micro.revision", "commit hash"],
    ),
    "remote code without opt-in": (
        lambda c, tmp: _local_model(
            c,
            tmp,
            {
                "config.json": '{"auto_map": {"AutoModelForCausalLM": "modeling_x.XForCausalLM"}}',
                "model.safetensors": "",
            },
        ),
        ["models.micro.trust_remote_code", "auto_map"],
    ),
    "pickled weights": (
        lambda c, tmp: _local_model(c, tmp, {"config.json": "{}", "pytorch_model.bin": ""}),
        ["models.micro.path", "pickled"],
    ),
    "hub model without an id": (lambda c, _: c["models"].update(micro={"source": "hub"}), ["models.micro.hub_id"]),
    # Sizes a job would find too small after the jobs before it were paid for (N = 2 x 4 samples).
    "a control larger than the never-seen split": (
        lambda c, _: c["datasets"]["github"].update(unseen=6),
        ["datasets.github.unseen", "2 x 4 = 8", "holds 6"],
    ),
    "relearning on never-seen samples the control needs": (
        lambda c, _: (c["datasets"]["github"].update(unseen=12), c["relearning"].update(source="unseen")),
        ["relearning.source", "disjoint", "(16 in all)", "unseen = 12"],
    ),
    "a baseline on never-seen samples the controls need": (
        lambda c, _: (
            c["datasets"]["github"].update(unseen=19),
            c["grid"].update(methods=["finetune"]),
            c.update(baseline={"source": "unseen"}),
        ),
        ["baseline.source", "after the 16", "3 left", "unseen = 19"],
    ),
    "a relearning source smaller than the forget set": (
        lambda c, _: (_second_dataset(c, retain=5), c["relearning"].update(source="retain", source_dataset="arxiv")),
        ["relearning.source", "(8)", "holds 5"],
    ),
    "a relearning batch larger than the forgotten samples": (
        lambda c, _: c["relearning"].update(batch_size=9),
        ["relearning.batch_size", "9", "8 samples"],
    ),
    "held-out recovery of a one-sample request": (
        lambda c, _: (
            c["datasets"]["github"].update(request_size=1, forget_requests=8),
            c["grid"].update(n_requests=[1]),
            c["relearning"].update(batch_size=1),
        ),
        ["relearning.held_out", "N = 1", "request_size = 1"],
    ),
    "a retain batch larger than the retain split": (
        lambda c, _: (c["grid"].update(methods=["ga_gd"]), c["unlearning"].update(retain_batch_size=25)),
        ["unlearning.retain_batch_size", "25", "retain = 24"],
    ),
    "a baseline batch larger than its source": (
        lambda c, _: (
            _second_dataset(c, unseen=3),
            c["grid"].update(methods=["finetune"]),
            c.update(baseline={"source": "unseen", "source_dataset": "arxiv"}),
        ),
        ["baseline.source", "8 samples", "holds 3"],
    ),
    "a base-training batch larger than its data": (
        lambda c, _: c["models"]["micro"]["base_training"].update(batch_size=41),
        ["models.micro.base_training.batch_size", "41", "40 forget, retain and retain_eval"],
    ),
    "more Fisher samples than the forget pool": (
        lambda c, _: c["capture"].update(fisher_samples=9),
        ["capture.fisher_samples", "9", "(8)"],
    ),
    "more retain samples captured than there are": (
        lambda c, _: c["capture"].update(retain_samples=9),
        ["capture.retain_samples", "9", "retain_eval = 8"],
    ),
    "more retain samples on the curves than there are": (
        lambda c, _: c.update(curves={"retain_samples": 30}),
        ["curves.retain_samples", "30", "retain_eval = 8"],
    ),
    "a width that heads cannot share": (
        lambda c, _: c["models"]["micro"].update(hidden_size=30, num_heads=4),
        ["models.micro.hidden_size", "30", "num_heads = 4"],
    ),
    "a sequence too short for a token of text": (
        lambda c, _: c["models"]["micro"].update(max_length=1),
        ["models.micro.max_length", "at least 2"],
    ),
    "a hyperparameter the method does not have": (
        lambda c, _: c.update(methods={"npo": {"betta": 0.5}}),
        ["methods.npo.betta", "it has: beta"],
    ),
    "a layer the model lacks (RMU's default, 7, on two layers)": (
        lambda c, _: c["grid"].update(methods=["ga", "rmu"]),
        ["methods.rmu.layer", "7", "models.micro.num_layers = 2", "layers 0 to 1"],
    ),
    "a layer that is not an index": (
        lambda c, _: c.update(methods={"rmu": {"layer": 0.5}}) or c["grid"].update(methods=["rmu"]),
        ["methods.rmu.layer", "0.5", "layers 0 to 1"],
    ),
    "a learning rate that is not a number": (
        lambda c, _: c["grid"].update(learning_rates=[float("nan")]),
        ["grid.learning_rates[0]", "nan is not a finite number"],
    ),
    "an infinite relearning rate": (
        lambda c, _: c["relearning"].update(learning_rate=float("inf")),
        ["relearning.learning_rate", "inf is not a finite number"],
    ),
    "an undefined benchmark": (
        lambda c, _: c["experiments"][0].update(benchmarks=["gsm8k"]),
        ["experiments[0].benchmarks", "'gsm8k'"],
    ),
    "a generation budget beyond the model's positions": (
        lambda c, _: _benchmark(c, max_new_tokens=63),
        ["benchmarks.gsm8k.max_new_tokens", "64 positions"],
    ),
    "fewer positions than max_length": (
        lambda c, _: c["models"]["micro"].update(max_positions=32),
        ["models.micro.max_positions", "max_length = 64"],
    ),
    "a prompt with a field of its own": (
        lambda c, _: _benchmark(c, prompt="Q: {problem}"),
        ["benchmarks.gsm8k.prompt", "{problem}"],
    ),
    "a hub benchmark without an id": (lambda c, _: _benchmark(c, source="hub"), ["benchmarks.gsm8k.hub_id"]),
    "held-out problems of a dataset without them": (
        lambda c, _: _benchmark(c, source="held_out"),
        ["experiments[0].benchmarks", "math_eval = 0"],
    ),
    "a sharded LoRA model": (
        lambda c, _: _sharded(c, lora={"enabled": True}),
        ["models.micro.sharding.enabled", "LoRA"],
    ),
    "sharding over one process": (
        lambda c, _: _sharded(c, sharding={"enabled": True}),
        ["models.micro.sharding.processes", "at least 2", "got 0"],
    ),
    "sharded processes unlike the GPUs": (
        lambda c, _: _sharded(c, resources={"gpu": 4}),
        ["models.micro.sharding.processes", "resources.gpu = 4"],
    ),
    "fewer threads than sharded processes": (
        lambda c, _: _sharded(c, threads=1),
        ["models.micro.threads", "threads >= 2"],
    ),
}


@pytest.mark.parametrize("case", list(BAD_CONFIGS))
def test_a_bad_config_is_rejected_before_any_job_with_a_message_naming_it(case, tmp_path, micro_config):
    mutate, expected = BAD_CONFIGS[case]
    mutate(micro_config, tmp_path)
    message = rejection(tmp_path, micro_config)
    for fragment in expected:
        assert fragment in message, (case, message[-2000:])
    assert not (tmp_path / "results").exists()  # nothing ran, nothing was written
