"""Stages that train: `base_model`, `unlearn` and `relearn`."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Mapping

from .. import cell_data, data, sharding
from ..capture import token_accuracy
from ..io import read_json, write_json
from ..methods import get_method
from ..models import (AdapterDisabled, add_lora, build_scratch_model, gradient_checkpointing, import_gguf,
                      load_checkpoint, load_pretrained, load_pretrained_local, merge_adapter, n_parameters,
                      pick_device, save_checkpoint, trainable_model)
from ..precision import WEIGHTS, Precision
from ..provenance import CHECKPOINT_RECORD, Recorder
from ..runtime import configure_torch
from ..seeds import derive_seed
from ..tokenization import encode, train_bpe
from ..training import OptimSettings, TrainRecord
from ..reversal import controlled, gain, matched_steps, quantization_probe, relearning_runs, restore, snapshot
from ..unlearning import UnlearnPlan, finetune, unlearn_requests
from .capture import capture_model

log = logging.getLogger(__name__)
PathLike = str | os.PathLike


def tokenized(tokenizer, records: list[dict], max_length: int) -> list[list[int]]:
    return encode(tokenizer, [r["text"] for r in records], max_length)


def train_base(data_dir: PathLike, out_dir: PathLike, model_name: str, spec: Mapping,
               seed: int, threads: int, pretrained_dir: PathLike | None = None,
               checkpointing: bool = False, generation_tokens: int = 0) -> None:
    """The base model: trained on forget + retain + retain_eval until it knows its forget set.

    `scratch`: a BPE trained on the background split, then a fresh model. Pretrained sources
    (`hub`, `local`, `gguf` via `pretrained_dir`): the pretrained model fine-tuned on forget +
    retain (the usual protocol when the forget data was not in its pretraining;
    `base_training.epochs: 0` keeps it as it is), through a LoRA adapter merged back in float32
    when the spec's `lora.enabled` is set. The base checkpoint is always full weights.
    `checkpointing`: gradient checkpointing (memory only; the weights are the same). A model whose
    positions cannot hold `max_length` tokens, or a prompt and `generation_tokens` (the longest
    benchmark budget), is refused before it trains. Sharded (sharding.py), every process loads the
    model on the host and trains its shard; the first writes the checkpoint.
    """
    run_seed = derive_seed(seed, "base", model_name, Path(data_dir).name)
    configure_torch(threads, run_seed)
    recorder = Recorder(params={"spec": dict(spec), "seed": seed},
                        inputs={"manifest": Path(data_dir) / "manifest.json"}, seed=run_seed)
    group = sharding.current()
    device = pick_device()
    precision = Precision.of(spec["dtype"], device)
    source = spec["source"]
    adapted = source != "scratch" and spec["lora"]["enabled"]
    # Weights that train are float32; under an adapter the base is frozen, in the compute dtype.
    dtype = precision.compute if adapted else WEIGHTS
    if source == "scratch":
        # One tokenizer for every process: the first trains it.
        tokenizer = group.from_main(train_bpe((r["text"] for r in data.load_split(data_dir, "background")),
                                              spec["vocab_size"]) if group.main else None)
        model = build_scratch_model(spec, tokenizer, run_seed).to(loading_device(group, device))
    elif source == "hub":
        model, tokenizer = load_pretrained(spec, loading_device(group, device), dtype)
    else:
        model, tokenizer = load_pretrained_local(pretrained_dir or spec["path"], loading_device(group, device), dtype,
                                                 spec["trust_remote_code"])
    log.info("model %s: %d parameters, vocabulary %d", model_name, n_parameters(model), len(tokenizer))
    check_positions(model, model_name, spec["max_length"], generation_tokens)

    training = spec["base_training"]
    members = [record for split in ("forget", "retain", "retain_eval") for record in data.load_split(data_dir, split)]
    sequences = tokenized(tokenizer, members, spec["max_length"])
    steps = training["epochs"] * -(-len(sequences) // training["batch_size"])
    if steps:
        trained = sharding.shard(add_lora(model, spec["lora"]) if adapted else model, group)
        with gradient_checkpointing(trained, checkpointing):
            record = finetune(trained, sequences, steps, training["batch_size"], OptimSettings.from_config(training),
                              tokenizer.pad_token_id, run_seed, desc="base training", precision=precision)
        if record.collapsed:
            raise RuntimeError(f"model {model_name!r}: base training diverged ({record.collapse_reason}); "
                               f"lower models.{model_name}.base_training.learning_rate")
        model = merge_adapter(trained) if adapted else trained
        recorder.extra["training"] = {"steps": steps, "final_loss": record.steps[-1]["loss"]}
    recorder.extra["precision"] = precision.record()
    save_trained(model, tokenizer, out_dir, recorder, group)


def loading_device(group: sharding.Group, device):
    """Where a model that will train is loaded: the host when sharded (`fully_shard` moves each
    process's shard to its device), else the device itself."""
    return "cpu" if group.sharded else device


def save_trained(model, tokenizer, out_dir: PathLike, recorder: Recorder, group: sharding.Group,
                 base_checkpoint: PathLike | None = None) -> None:
    """Write a trained model's checkpoint: every process calls it, the first writes (a sharded
    model's weights gathered whole)."""
    if group.sharded:
        recorder.extra["sharding"] = {"processes": group.size}
    weights = sharding.full_state_dict(model, group)
    if group.main:
        save_checkpoint(model, tokenizer, out_dir, recorder.record(), base_checkpoint=base_checkpoint,
                        state_dict=weights)


def check_positions(model, model_name: str, max_length: int, generation_tokens: int) -> None:
    positions = getattr(model.config, "max_position_embeddings", None)
    needed = max(max_length, generation_tokens + 2)
    if positions is not None and positions < needed:
        raise ValueError(f"models.{model_name}: the model has {positions} positions, but max_length = {max_length} "
                         f"and a benchmark budget of {generation_tokens} new tokens after a prompt need {needed}")


def import_model(model_name: str, spec: Mapping, out_dir: PathLike) -> None:
    """Convert a `gguf` model spec's file into a safetensors checkpoint, once."""
    recorder = Recorder(params={"spec": dict(spec)})
    import_gguf(spec["gguf_package"], spec["gguf_file"], out_dir, recorder.record())


def unlearn(base_dir: PathLike, data_dir: PathLike, out_dir: PathLike, *, curve_path: PathLike,
            baseline_data_dir: PathLike, method: str, hyperparameters: Mapping, n_requests: int,
            learning_rate: float, unlearning: Mapping, baseline: Mapping | None, curves: Mapping,
            lora: Mapping, max_length: int, dtype: str, seed: int, cell: str, threads: int,
            checkpointing: bool = False) -> None:
    """Unlearn requests 1..N one after another, starting from the base model.

    Writes the unlearned checkpoint and, at `curve_path`, the accuracies after each request.
    Weights train in float32 under autocast in `dtype` (precision.py); the frozen reference of
    NPO and KL methods is held in `dtype`. Sharded, the reference is sharded too.
    """
    run_seed = derive_seed(seed, cell, "unlearn")
    configure_torch(threads, run_seed)
    params = {"method": method, "hyperparameters": dict(hyperparameters), "n_requests": n_requests,
              "learning_rate": learning_rate, "unlearning": dict(unlearning), "baseline": baseline,
              "curves": dict(curves), "lora": dict(lora), "dtype": dtype, "seed": seed}
    recorder = Recorder(params=params, inputs={"base": base_dir}, seed=run_seed)
    group = sharding.current()
    device = pick_device()
    precision = Precision.of(dtype, device)
    model, tokenizer = trainable_model(base_dir, loading_device(group, device), precision, lora)
    model = sharding.shard(model, group)
    chosen = get_method(method)
    if not chosen.uses_reference:
        reference = None
    elif lora["enabled"]:
        # Only the adapter trains; the reference is the same model with the adapter switched off.
        reference = AdapterDisabled(model)
    else:
        reference = load_checkpoint(base_dir, loading_device(group, device), precision.compute)[0]
        reference = sharding.shard(reference.requires_grad_(False), group)

    forget = data.load_split(data_dir, "forget")
    requests = [tokenized(tokenizer, [r for r in forget if r["request"] == k], max_length)
                for k in range(1, n_requests + 1)]
    retain = []
    if chosen.uses_retain:
        # The fine-tuning baseline trains on its own data; unlearning methods on the retain split.
        records = (cell_data.baseline_set(data_dir, baseline_data_dir, baseline["source"], n_requests) if baseline
                   else data.load_split(data_dir, "retain"))
        retain = tokenized(tokenizer, records, max_length)
    plan = UnlearnPlan(steps_per_request=unlearning["steps_per_request"],
                       batch_size=unlearning["batch_size"],
                       retain_batch_size=unlearning["retain_batch_size"],
                       optim=OptimSettings.from_config(unlearning, learning_rate=learning_rate))
    retain_probe = tokenized(tokenizer, cell_data.retain_probe(data_dir, curves["retain_samples"]), max_length)

    def after_request(index: int) -> dict:
        probes = {"forget_seen": [s for request in requests[:index] for s in request],
                  "forget_request": requests[index - 1], "retain": retain_probe}
        return accuracies(model, probes, tokenizer.pad_token_id)

    with gradient_checkpointing(model, checkpointing):
        record = unlearn_requests(model, reference, chosen, hyperparameters, requests, retain, plan,
                                  tokenizer.pad_token_id, run_seed,
                                  after_request=after_request if curves["after_each_request"] else None,
                                  precision=precision)
    recorder.extra.update(outcome(record), training=record.steps, precision=precision.record())
    save_trained(model, tokenizer, out_dir, recorder, group, base_checkpoint=base_dir)
    if group.main:
        write_json(curve_path, {"collapsed": record.collapsed, "requests": record.evaluations})


def relearn(unlearned_dir: PathLike, data_dir: PathLike, out_dir: PathLike, *, source_data_dir: PathLike,
            captures: Mapping[str, PathLike], curve_path: PathLike, reversal_path: PathLike, n_requests: int,
            relearning: Mapping, quantization: Mapping, curves: Mapping, capture_config: Mapping,
            max_length: int, dtype: str, seed: int, cell: str, threads: int, checkpointing: bool = False,
            benchmarks: Mapping[str, Mapping] | None = None,
            benchmark_dirs: Mapping[str, PathLike] | None = None) -> None:
    """Relearn the unlearned model and measure how much of the forgotten knowledge comes back.

    The job captures the model it starts from (`captures["unlearned"]`); measures it with its
    linear weights quantized; relearns it for every attack budget (the primary one, the extra
    ones and the one matched to the forget set) on the relearning set, against a control on
    never-seen samples of the same domain (cell_data.py: a separate run of the same budget when
    relearning on the forgotten samples, the same run measured there for any other source); keeps
    the model of the primary budget as the relearned stage and captures it. Writes
    the relearning-efficiency curve (`curve_path`) and the reversal measures (`reversal_path`).
    Quantization rounds float32 weights; captures read the weights cast to `dtype`. Sharded
    (sharding.py), the first process alone measures, quantizes and captures the unlearned model,
    on one device, before all of them relearn; it writes the outputs and captures the relearned
    model, gathered whole.
    """
    run_seed = derive_seed(seed, cell, "relearn")
    configure_torch(threads, run_seed)
    params = {"n_requests": n_requests, "relearning": dict(relearning), "quantization": dict(quantization),
              "curves": dict(curves), "dtype": dtype, "seed": seed}
    recorder = Recorder(params=params, inputs={"unlearned": unlearned_dir}, seed=run_seed)
    group = sharding.current()
    device = pick_device()
    precision = Precision.of(dtype, device)
    # An adapter comes merged.
    model, tokenizer = load_checkpoint(unlearned_dir, device if group.main else "cpu", WEIGHTS)
    capture = {"capture_config": capture_config, "max_length": max_length, "benchmarks": benchmarks,
               "benchmark_dirs": benchmark_dirs}

    def encode_records(records):
        return tokenized(tokenizer, records, max_length)

    samples = cell_data.relearning_set(data_dir, source_data_dir, relearning["source"], n_requests)
    control_kind = cell_data.control_kind(data_dir, source_data_dir, relearning["source"])
    forgotten = cell_data.forgotten(data_dir, n_requests)
    probes = {"forget": encode_records(forgotten),
              "retain": encode_records(cell_data.retain_probe(data_dir, curves["retain_samples"])),
              "unseen": encode_records(cell_data.control_set(data_dir, n_requests))}

    def evaluate(*names: str) -> dict:
        """Accuracy on the named probes (each measurement needs only some: evaluation is most of
        this job's time)."""
        with precision.autocast():
            return accuracies(model, {name: probes[name] for name in names or ("forget", "retain")},
                              tokenizer.pad_token_id)

    unlearned = quantized = None
    if group.main:
        unlearned = evaluate("forget", "retain", "unseen")
        quantized = [{**q, "forget_gain": gain(q, unlearned, "forget")}
                     for q in quantization_probe(model, quantization["bits"], evaluate)]
        capture_model(model.to(precision.compute), tokenizer, unlearned_dir, data_dir, captures["unlearned"],
                      n_requests=n_requests, **capture)
    unlearned, quantized = group.from_main((unlearned, quantized))
    unlearned_record = read_json(Path(unlearned_dir) / CHECKPOINT_RECORD)
    base_dir = None
    if "base_checkpoint" in unlearned_record:
        # A LoRA cell: the adapter keeps training over its frozen base (the capture saw it merged).
        base_dir = Path(unlearned_dir).parent / unlearned_record["base_checkpoint"]
        model, tokenizer = load_checkpoint(unlearned_dir, device, precision.compute, trainable_adapter=True)
        unlearned = evaluate("forget", "retain", "unseen")
    elif precision.mixed or group.sharded:
        # The cast above rounded it; sharded, every process loads it on the host to shard it.
        model, tokenizer = load_checkpoint(unlearned_dir, loading_device(group, device), WEIGHTS)
    model = sharding.shard(model, group)
    start = snapshot(model)

    def relearn_on(sequences, run, measure, evaluate_every=0) -> tuple[TrainRecord, dict[int, dict]]:
        """Train from the unlearned weights; the `measure` results after each step of the run's
        `measure_at` (the model as it is, should training stop early)."""
        restore(model, start)
        settings = OptimSettings.from_config(relearning, learning_rate=run["learning_rate"])
        with gradient_checkpointing(model, checkpointing):
            trained = finetune(model, sequences, run["steps"], relearning["batch_size"], settings,
                               tokenizer.pad_token_id, run_seed, desc=f"relearning {run['steps']} steps",
                               evaluate=measure, evaluate_every=evaluate_every, evaluate_at=run["measure_at"],
                               precision=precision)
        found = {e["step"]: {k: v for k, v in e.items() if k != "step"} for e in trained.evaluations}
        return trained, {s: found[s] if s in found else measure() for s in sorted(run["measure_at"])}

    log.info("relearning on %d samples of %s/%s; control (%s) on %d unseen samples", len(samples),
             Path(source_data_dir).name, relearning["source"], control_kind, len(probes["unseen"]))
    matched = matched_steps(relearning, len(forgotten))
    budgets = []
    for run in relearning_runs(relearning, matched):
        every = curves["relearning_every"] if run["primary"] else 0
        if control_kind == cell_data.SEPARATE_RUN:
            # What the same budget teaches on never-seen data, measured there.
            _, controls = relearn_on(probes["unseen"], run, lambda: evaluate("unseen"))
            record, relearned_at = relearn_on(encode_records(samples), run, evaluate, every)
        else:
            # A transfer: the control is the same run measured on never-seen data.
            record, relearned_at = relearn_on(encode_records(samples), run,
                                              lambda: evaluate("forget", "retain", "unseen"), every)
            controls = relearned_at
        for steps in sorted(run["measure_at"]):
            relearned, control = relearned_at[steps], controls[steps]
            forget_gain, control_gain = gain(relearned, unlearned, "forget"), gain(control, unlearned, "unseen")
            budgets.append({"steps": steps, "learning_rate": run["learning_rate"],
                            "primary": run["primary"] and steps == run["steps"],
                            "matched": steps == matched and run["learning_rate"] == relearning["learning_rate"],
                            "relearned": relearned, "control": {"unseen": control["unseen"]},
                            "forget_gain": forget_gain, "control_gain": control_gain,
                            "controlled_recovery": controlled(forget_gain, control_gain)})

    result = outcome(record)
    # A model that collapsed during unlearning stays marked as collapsed after relearning.
    if unlearned_record.get("collapsed"):
        result["collapsed"] = True
    recorder.extra.update(result, training=record.steps, precision=precision.record())
    save_trained(model, tokenizer, out_dir, recorder, group, base_checkpoint=base_dir)
    if not group.main:
        return
    write_json(curve_path, {"collapsed": result["collapsed"],
                            "steps": [{"step": 0, **unlearned}, *record.evaluations]})
    write_json(reversal_path, {"collapsed": result["collapsed"], "control": control_kind, "matched_steps": matched,
                               "unlearned": unlearned, "budgets": budgets, "quantization": quantized})
    if base_dir is not None:
        model = merge_adapter(model)
    elif group.sharded:
        model, tokenizer = load_checkpoint(out_dir, device, precision.compute)   # whole, on one device
    capture_model(model.to(precision.compute), tokenizer, out_dir, data_dir, captures["relearned"],
                  n_requests=n_requests, **capture)


def accuracies(model, probes: Mapping[str, list], pad_id: int) -> dict[str, dict]:
    """Token accuracy of the model on each named set of sequences."""
    result = {}
    for name, sequences in probes.items():
        counts = token_accuracy(model, sequences, pad_id, batch_size=32)
        counts["accuracy"] = counts["correct"] / counts["tokens"] if counts["tokens"] else None
        result[name] = counts
    return result


def outcome(record: TrainRecord) -> dict[str, Any]:
    return {"collapsed": record.collapsed, "collapse_step": record.collapse_step,
            "collapse_reason": record.collapse_reason}
