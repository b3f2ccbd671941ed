"""Stage `unlearn`: requests 1..N unlearned one after another, starting from the base model."""

from __future__ import annotations

import os
from functools import partial
from typing import Mapping

from .. import cell_data, data, sharding
from ..io import write_json
from ..methods import Method, get_method
from ..models import AdapterDisabled, gradient_checkpointing, load_checkpoint, pick_device, trainable_model
from ..precision import Precision
from ..provenance import Recorder
from ..runtime import configure_torch
from ..seeds import derive_seed
from ..training import OptimSettings
from ..unlearning import UnlearnPlan, unlearn_requests
from .training_jobs import accuracies, loading_device, outcome, save_trained, tokenized

PathLike = str | os.PathLike


def unlearn(
    base_dir: PathLike,
    data_dir: PathLike,
    out_dir: PathLike,
    *,
    curve_path: PathLike,
    baseline_data_dir: PathLike,
    method: str,
    hyperparameters: Mapping,
    n_requests: int,
    learning_rate: float,
    unlearning: Mapping,
    baseline: Mapping | None,
    curves: Mapping,
    lora: Mapping,
    max_length: int,
    dtype: str,
    seed: int,
    cell: str,
    threads: int,
    checkpointing: bool = False,
) -> None:
    """Unlearn requests 1..N one after another, starting from the base model.

    Writes the unlearned checkpoint and, at `curve_path`, the accuracies after each request.
    Weights train in float32 under autocast in `dtype` (precision.py); the frozen reference of
    NPO and KL methods is held in `dtype`. Sharded, the reference is sharded too.
    """
    run_seed = derive_seed(seed, cell, "unlearn")
    configure_torch(threads, run_seed)
    params = {
        "method": method,
        "hyperparameters": dict(hyperparameters),
        "n_requests": n_requests,
        "learning_rate": learning_rate,
        "unlearning": dict(unlearning),
        "baseline": baseline,
        "curves": dict(curves),
        "lora": dict(lora),
        "dtype": dtype,
        "seed": seed,
    }
    recorder = Recorder(params=params, inputs={"base": base_dir}, seed=run_seed)
    group = sharding.current()
    device = pick_device()
    precision = Precision.of(dtype, device)
    model, tokenizer = trainable_model(base_dir, loading_device(group, device), precision, lora)
    model = sharding.shard(model, group)
    chosen = get_method(method)
    reference = reference_model(chosen, model, base_dir, lora, group, device, precision)

    forget = data.load_split(data_dir, "forget")
    requests = [
        tokenized(tokenizer, [r for r in forget if r["request"] == k], max_length) for k in range(1, n_requests + 1)
    ]
    retain = []
    if chosen.uses_retain:
        # The fine-tuning baseline trains on its own data; unlearning methods on the retain split.
        records = (
            cell_data.baseline_set(data_dir, baseline_data_dir, baseline["source"], n_requests)
            if baseline
            else data.load_split(data_dir, "retain")
        )
        retain = tokenized(tokenizer, records, max_length)
    plan = UnlearnPlan(
        steps_per_request=unlearning["steps_per_request"],
        batch_size=unlearning["batch_size"],
        retain_batch_size=unlearning["retain_batch_size"],
        optim=OptimSettings.from_config(unlearning, learning_rate=learning_rate),
    )
    retain_probe = tokenized(tokenizer, cell_data.retain_probe(data_dir, curves["retain_samples"]), max_length)
    after_request = partial(request_accuracies, model, requests, retain_probe, tokenizer.pad_token_id)
    with gradient_checkpointing(model, checkpointing):
        record = unlearn_requests(
            model,
            reference,
            chosen,
            hyperparameters,
            requests,
            retain,
            plan,
            tokenizer.pad_token_id,
            run_seed,
            after_request=after_request if curves["after_each_request"] else None,
            precision=precision,
        )
    recorder.extra.update(outcome(record), training=record.steps, precision=precision.record())
    save_trained(model, tokenizer, out_dir, recorder, group, base_checkpoint=base_dir)
    if group.main:
        write_json(curve_path, {"collapsed": record.collapsed, "requests": record.evaluations})


def reference_model(
    method: Method, model, base_dir: PathLike, lora: Mapping, group: sharding.Group, device, precision: Precision
):
    """The frozen model NPO and KL methods compare with (None for the others), in the compute dtype."""
    if not method.uses_reference:
        return None
    if lora["enabled"]:
        # Only the adapter trains; the reference is the same model with the adapter switched off.
        return AdapterDisabled(model)
    reference = load_checkpoint(base_dir, loading_device(group, device), precision.compute)[0]
    return sharding.shard(reference.requires_grad_(False), group)


def request_accuracies(
    model, requests: list[list[list[int]]], retain_probe: list[list[int]], pad_id: int, index: int
) -> dict:
    """Accuracies after request `index` (from 1): on every request so far, on that request alone
    and on the retain probes."""
    probes = {
        "forget_seen": [s for request in requests[:index] for s in request],
        "forget_request": requests[index - 1],
        "retain": retain_probe,
    }
    return accuracies(model, probes, pad_id)
