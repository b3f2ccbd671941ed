"""Stages run directly (no Snakemake) on the micro workflow's data and base model."""

import json

import pytest

from conftest import load_micro_config
from reversibility.config import Cell
from reversibility.io import read_json, sha256_file
from reversibility.stages import evaluation, training

pytestmark = pytest.mark.slow

CONFIG = load_micro_config()


def defaults(section):
    """The schema's defaults of a section, as the workflow passes them."""
    from snakemake.utils import validate

    config = load_micro_config()
    validate(config, str(__import__("conftest").REPO / "workflow/schemas/config.schema.yaml"))
    return config[section]


def unlearn(run, out, method="ga", lr=1e-3, n=2, lora=None):
    cell = f"micro/github/{method}/n{n}/lr{lr:g}"
    training.unlearn(run / "results/models/micro/github/base", run / "results/data/github", out / "unlearned",
                     curve_path=out / "requests.json", baseline_data_dir=run / "results/data/github",
                     method=method, hyperparameters={}, n_requests=n, learning_rate=lr,
                     unlearning=defaults("unlearning"), baseline=None, curves=defaults("curves"),
                     lora=lora or {"enabled": False}, max_length=64, seed=0, cell=cell, threads=1)
    return out / "unlearned"


def test_two_runs_of_one_cell_give_bit_identical_weights(micro_run, tmp_path):
    first = unlearn(micro_run, tmp_path / "a")
    second = unlearn(micro_run, tmp_path / "b")
    assert sha256_file(first / "model.safetensors") == sha256_file(second / "model.safetensors")
    assert read_json(tmp_path / "a/requests.json") == read_json(tmp_path / "b/requests.json")


def test_the_curve_after_each_request_tracks_the_forget_set(micro_run, tmp_path):
    unlearn(micro_run, tmp_path)
    curve = read_json(tmp_path / "requests.json")
    assert [point["request"] for point in curve["requests"]] == [1, 2]
    first, second = curve["requests"]
    assert first["forget_seen"]["tokens"] == first["forget_request"]["tokens"]
    assert second["forget_seen"]["tokens"] > second["forget_request"]["tokens"]


def test_a_diverging_cell_is_marked_collapsed_and_still_measured(micro_run, tmp_path):
    unlearned = unlearn(micro_run, tmp_path, lr=1e5)
    record = read_json(unlearned / "provenance.json")
    assert record["collapsed"] and record["collapse_step"] is not None
    captures = {stage: tmp_path / f"{stage}.h5" for stage in ("unlearned", "relearned")}
    training.relearn(unlearned, micro_run / "results/data/github", tmp_path / "relearned",
                     source_data_dir=micro_run / "results/data/github", captures=captures,
                     curve_path=tmp_path / "relearning.json", n_requests=2, relearning=defaults("relearning"),
                     curves=defaults("curves"), capture_config=defaults("capture"), max_length=64, seed=0,
                     cell="micro/github/ga/n2/lr100000", threads=1)
    for stage, capture in captures.items():
        evaluation.stage_metrics(capture, micro_run / "results/data/github", tmp_path / f"{stage}.json", n_requests=2)
        evaluation.diagnostics(micro_run / "results/activations/micro/github/base.h5", capture,
                               micro_run / "results/data/github", tmp_path / f"{stage}-cka.json", n_requests=2)
        metrics = read_json(tmp_path / f"{stage}.json")
        assert metrics["collapsed"] is True
        assert len(read_json(tmp_path / f"{stage}-cka.json")["splits"]["all"]["cka"]) == 4
        json.dumps(metrics, allow_nan=False)  # strict JSON: non-finite numbers became null
    assert read_json(tmp_path / "relearning.json")["collapsed"] is True
