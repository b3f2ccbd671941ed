"""Stages that train: `base_model`, `unlearn` and `relearn`."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Mapping

from .. import data
from ..capture import token_accuracy
from ..io import read_json, write_json
from ..methods import get_method
from ..models import (build_scratch_model, load_checkpoint, load_pretrained, n_parameters, pick_device,
                      save_checkpoint)
from ..provenance import CHECKPOINT_RECORD, Recorder
from ..runtime import configure_torch
from ..seeds import derive_seed
from ..tokenization import encode, train_bpe
from ..training import OptimSettings, TrainRecord
from ..unlearning import UnlearnPlan, finetune, unlearn_requests
from .capture import capture_model

log = logging.getLogger(__name__)
PathLike = str | os.PathLike


def tokenized(tokenizer, records: list[dict], max_length: int) -> list[list[int]]:
    return encode(tokenizer, [r["text"] for r in records], max_length)


def train_base(data_dir: PathLike, out_dir: PathLike, model_name: str, spec: Mapping,
               seed: int, threads: int) -> None:
    """The base model: trained on forget + retain until it knows its forget set.

    `scratch`: a BPE trained on the background split, then a fresh model. `hub`: the pretrained
    model, fine-tuned on forget + retain (the usual protocol when the forget data was not in its
    pretraining; `base_training.epochs: 0` keeps it as it is).
    """
    run_seed = derive_seed(seed, "base", model_name, Path(data_dir).name)
    configure_torch(threads, run_seed)
    recorder = Recorder(params={"spec": dict(spec), "seed": seed},
                        inputs={"manifest": Path(data_dir) / "manifest.json"}, seed=run_seed)
    if spec["source"] == "scratch":
        tokenizer = train_bpe((r["text"] for r in data.load_split(data_dir, "background")), spec["vocab_size"])
        model = build_scratch_model(spec, tokenizer, run_seed).to(pick_device())
    else:
        model, tokenizer = load_pretrained(spec, pick_device())
    log.info("model %s: %d parameters, vocabulary %d", model_name, n_parameters(model), len(tokenizer))

    training = spec["base_training"]
    members = data.load_split(data_dir, "forget") + data.load_split(data_dir, "retain")
    sequences = tokenized(tokenizer, members, spec["max_length"])
    steps = training["epochs"] * -(-len(sequences) // training["batch_size"])
    if steps:
        record = finetune(model, sequences, steps, training["batch_size"], OptimSettings.from_config(training),
                          tokenizer.pad_token_id, run_seed, desc="base training")
        if record.collapsed:
            raise RuntimeError(f"model {model_name!r}: base training diverged ({record.collapse_reason}); "
                               f"lower models.{model_name}.base_training.learning_rate")
        recorder.extra["training"] = {"steps": steps, "final_loss": record.steps[-1]["loss"]}
    save_checkpoint(model, tokenizer, out_dir, recorder.record())


def unlearn(base_dir: PathLike, data_dir: PathLike, out_dir: PathLike, *, curve_path: PathLike,
            baseline_data_dir: PathLike, method: str, hyperparameters: Mapping, n_requests: int,
            learning_rate: float, unlearning: Mapping, baseline: Mapping | None, curves: Mapping,
            max_length: int, seed: int, cell: str, threads: int) -> None:
    """Unlearn requests 1..N one after another, starting from the base model.

    Writes the unlearned checkpoint and, at `curve_path`, the accuracies after each request.
    """
    run_seed = derive_seed(seed, cell, "unlearn")
    configure_torch(threads, run_seed)
    params = {"method": method, "hyperparameters": dict(hyperparameters), "n_requests": n_requests,
              "learning_rate": learning_rate, "unlearning": dict(unlearning), "baseline": baseline,
              "curves": dict(curves), "seed": seed}
    recorder = Recorder(params=params, inputs={"base": base_dir}, seed=run_seed)
    device = pick_device()
    model, tokenizer = load_checkpoint(base_dir, device)
    chosen = get_method(method)
    reference = load_checkpoint(base_dir, device)[0].requires_grad_(False) if chosen.uses_reference else None

    forget = data.load_split(data_dir, "forget")
    requests = [tokenized(tokenizer, [r for r in forget if r["request"] == k], max_length)
                for k in range(1, n_requests + 1)]
    retain = []
    if chosen.uses_retain:
        # The fine-tuning baseline trains on its own data; unlearning methods on the retain split.
        source_dir, split = (baseline_data_dir, baseline["source"]) if baseline else (data_dir, "retain")
        retain = tokenized(tokenizer, data.load_split(source_dir, split), max_length)
    plan = UnlearnPlan(steps_per_request=unlearning["steps_per_request"],
                       batch_size=unlearning["batch_size"],
                       retain_batch_size=unlearning["retain_batch_size"],
                       optim=OptimSettings.from_config(unlearning, learning_rate=learning_rate))
    retain_probe = tokenized(tokenizer, data.load_split(data_dir, "retain")[: curves["retain_samples"]], max_length)

    def after_request(index: int) -> dict:
        probes = {"forget_seen": [s for request in requests[:index] for s in request],
                  "forget_request": requests[index - 1], "retain": retain_probe}
        return accuracies(model, probes, tokenizer.pad_token_id)

    record = unlearn_requests(model, reference, chosen, hyperparameters, requests, retain, plan,
                              tokenizer.pad_token_id, run_seed,
                              after_request=after_request if curves["after_each_request"] else None)
    recorder.extra.update(outcome(record), training=record.steps)
    save_checkpoint(model, tokenizer, out_dir, recorder.record())
    write_json(curve_path, {"collapsed": record.collapsed, "requests": record.evaluations})


def relearn(unlearned_dir: PathLike, data_dir: PathLike, out_dir: PathLike, *, source_data_dir: PathLike,
            captures: Mapping[str, PathLike], curve_path: PathLike, n_requests: int, relearning: Mapping,
            curves: Mapping, capture_config: Mapping, max_length: int, seed: int, cell: str,
            threads: int) -> None:
    """Fine-tune the unlearned model for a fixed step budget on the relearning set.

    The job captures the model it starts from (`captures["unlearned"]`) and the model it ends
    with (`captures["relearned"]`), so each model is loaded once; `curve_path` gets the forget
    and retain accuracy every `curves.relearning_every` steps (the relearning-efficiency curve).
    """
    run_seed = derive_seed(seed, cell, "relearn")
    configure_torch(threads, run_seed)
    params = {"n_requests": n_requests, "relearning": dict(relearning), "curves": dict(curves), "seed": seed}
    recorder = Recorder(params=params, inputs={"unlearned": unlearned_dir}, seed=run_seed)
    model, tokenizer = load_checkpoint(unlearned_dir, pick_device())
    capture = {"capture_config": capture_config, "max_length": max_length}
    capture_model(model, tokenizer, unlearned_dir, data_dir, captures["unlearned"], **capture)

    samples = relearning_set(data_dir, source_data_dir, relearning["source"], n_requests)
    log.info("relearning on %d samples of %s/%s", len(samples), Path(source_data_dir).name, relearning["source"])
    probes = {"forget": tokenized(tokenizer, data.requested(data.load_split(data_dir, "forget"), n_requests), max_length),
              "retain": tokenized(tokenizer, data.load_split(data_dir, "retain")[: curves["retain_samples"]], max_length)}

    def evaluate() -> dict:
        return accuracies(model, probes, tokenizer.pad_token_id)

    start = {"step": 0, **evaluate()}
    record = finetune(model, tokenized(tokenizer, samples, max_length), relearning["steps"],
                      relearning["batch_size"], OptimSettings.from_config(relearning),
                      tokenizer.pad_token_id, run_seed, desc="relearning",
                      evaluate=evaluate, evaluate_every=curves["relearning_every"])
    result = outcome(record)
    # A model that collapsed during unlearning stays marked as collapsed after relearning.
    if read_json(Path(unlearned_dir) / CHECKPOINT_RECORD).get("collapsed"):
        result["collapsed"] = True
    recorder.extra.update(result, training=record.steps)
    save_checkpoint(model, tokenizer, out_dir, recorder.record())
    write_json(curve_path, {"collapsed": result["collapsed"], "steps": [start, *record.evaluations]})
    capture_model(model, tokenizer, out_dir, data_dir, captures["relearned"], **capture)


def accuracies(model, probes: Mapping[str, list], pad_id: int) -> dict[str, dict]:
    """Token accuracy of the model on each named set of sequences."""
    result = {}
    for name, sequences in probes.items():
        counts = token_accuracy(model, sequences, pad_id, batch_size=32)
        counts["accuracy"] = counts["correct"] / counts["tokens"] if counts["tokens"] else None
        result[name] = counts
    return result


def relearning_set(data_dir: PathLike, source_data_dir: PathLike, source: str, n_requests: int) -> list[dict]:
    """The cell's forgotten samples, or as many samples of another split (or domain).

    The size matches the forget set so that a control relearns on the same amount of data.
    """
    forgotten = data.requested(data.load_split(data_dir, "forget"), n_requests)
    if source == "forget" and Path(source_data_dir) == Path(data_dir):
        return forgotten
    pool = data.load_split(source_data_dir, source)
    if len(pool) < len(forgotten):
        raise data.DataError(f"{source_data_dir}: the {source} split holds {len(pool)} samples, fewer than "
                             f"the {len(forgotten)} forgotten ones it stands in for (relearning.source)")
    return pool[: len(forgotten)]


def outcome(record: TrainRecord) -> dict[str, Any]:
    return {"collapsed": record.collapsed, "collapse_step": record.collapse_step,
            "collapse_reason": record.collapse_reason}
