"""Stage `relearn`: how much of the forgotten knowledge comes back, measured on one loaded model
against a control (reversal.py).

The job's measurements, in order: the unlearned model's accuracies, those with its linear weights
quantized, and its capture; then, from the same weights, every attack budget (the primary one, the
extra ones and the one matched to the forget set) relearned on the relearning set against a
control on never-seen samples of the same domain (cell_data.py: a separate run of the same budget
when relearning on the forgotten samples, the same run measured there for any other source). The
primary budget's model is the relearned stage: saved and captured. Relearning on the forgotten
samples, held-out recovery runs first (`relearning.held_out`): the matched budget on one part of
them, measured on the other.

Quantization rounds float32 weights; captures read the weights cast to `dtype`. Sharded
(sharding.py), the first process alone measures, quantizes and captures the unlearned model, on
one device, before all of them relearn; it writes the outputs and captures the relearned model,
gathered whole.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Mapping

from .. import cell_data, sharding
from ..io import read_json, write_json
from ..models import load_checkpoint, merge_adapter, pick_device
from ..precision import WEIGHTS, Precision
from ..provenance import CHECKPOINT_RECORD, Recorder
from ..reversal import Relearner, matched_steps, measure_budgets, measure_held_out, quantization_measures
from ..runtime import configure_torch
from ..seeds import derive_seed
from .capture import capture_model
from .training_jobs import accuracies, loading_device, outcome, save_trained, tokenized

log = logging.getLogger(__name__)
PathLike = str | os.PathLike


@dataclass
class ProbedModel:
    """The model the job measures, with the token ids of the sets it is measured on: the cell's
    forgotten samples, the retain probes and the control samples (`unseen`)."""

    model: Any
    tokenizer: Any
    precision: Precision
    probes: dict[str, list[list[int]]]

    def accuracy(self, *names: str) -> dict:
        """Accuracy on the named probes, forget and retain by default (each measurement needs only
        some: evaluation is most of this job's time)."""
        with self.precision.autocast():
            return accuracies(
                self.model,
                {name: self.probes[name] for name in names or ("forget", "retain")},
                self.tokenizer.pad_token_id,
            )


def relearn(
    unlearned_dir: PathLike,
    data_dir: PathLike,
    out_dir: PathLike,
    *,
    source_data_dir: PathLike,
    captures: Mapping[str, PathLike],
    curve_path: PathLike,
    reversal_path: PathLike,
    n_requests: int,
    relearning: Mapping,
    quantization: Mapping,
    curves: Mapping,
    capture_config: Mapping,
    max_length: int,
    dtype: str,
    seed: int,
    cell: str,
    threads: int,
    checkpointing: bool = False,
    benchmarks: Mapping[str, Mapping] | None = None,
    benchmark_dirs: Mapping[str, PathLike] | None = None,
) -> None:
    """Relearn the unlearned model and measure how much of the forgotten knowledge comes back
    (the measurements are in the module's docstring). Writes the relearned checkpoint, the
    captures of the model it starts from and of the relearned one (`captures`), the
    relearning-efficiency curve (`curve_path`) and the reversal measures (`reversal_path`)."""
    run_seed = derive_seed(seed, cell, "relearn")
    configure_torch(threads, run_seed)
    params = {
        "n_requests": n_requests,
        "relearning": dict(relearning),
        "quantization": dict(quantization),
        "curves": dict(curves),
        "dtype": dtype,
        "seed": seed,
    }
    recorder = Recorder(params=params, inputs={"unlearned": unlearned_dir}, seed=run_seed)
    group, device = sharding.current(), pick_device()
    capture = partial(
        capture_model,
        data_dir=data_dir,
        n_requests=n_requests,
        capture_config=capture_config,
        max_length=max_length,
        benchmarks=benchmarks,
        benchmark_dirs=benchmark_dirs,
    )
    control_kind = cell_data.control_kind(data_dir, source_data_dir, relearning["source"])
    # Held out: what relearning on the cell's own forgotten samples never shows (other sources
    # show none of them: their controlled recovery is already a held-out one).
    split = None
    if relearning["held_out"] and control_kind == cell_data.SEPARATE_RUN:
        split = cell_data.held_out_split(data_dir, n_requests)
    probes = probe_sets(data_dir, n_requests, curves["retain_samples"])
    job = load_unlearned(
        unlearned_dir,
        device if group.main else "cpu",
        Precision.of(dtype, device),
        {**probes, "held_out": split[1]} if split else probes,
        max_length,
    )
    relearning_set = cell_data.relearning_set(data_dir, source_data_dir, relearning["source"], n_requests)
    samples = tokenized(job.tokenizer, relearning_set, max_length)

    # The first process alone measures and captures the model it starts from, as one process would.
    capture_unlearned = partial(capture, checkpoint_dir=unlearned_dir, out_path=captures["unlearned"])
    measured = measure_unlearned(job, quantization["bits"], capture_unlearned) if group.main else None
    unlearned, quantized = group.from_main(measured)
    unlearned_record = read_json(Path(unlearned_dir) / CHECKPOINT_RECORD)
    base_dir = adapter_base(unlearned_dir, unlearned_record)
    load_to_train(job, unlearned_dir, base_dir is not None, group, device)
    if base_dir is not None:
        # The gains are over the model that trains: the adapter over its frozen base.
        unlearned = job.accuracy("forget", "retain", "unseen")
    job.model = sharding.shard(job.model, group)

    relearner = Relearner(job.model, relearning, job.tokenizer.pad_token_id, run_seed, job.precision, checkpointing)
    log.info(
        "relearning on %d samples of %s/%s; control (%s) on %d unseen samples",
        len(samples),
        Path(source_data_dir).name,
        relearning["source"],
        control_kind,
        len(job.probes["unseen"]),
    )
    matched = matched_steps(relearning, len(job.probes["forget"]))
    held_out = None
    if split:
        held_out = measure_held_out(relearner, tokenized(job.tokenizer, split[0], max_length), job.accuracy, matched)
    budgets, record = measure_budgets(
        relearner,
        samples,
        job.probes["unseen"],
        job.accuracy,
        unlearned,
        control_kind=control_kind,
        matched=matched,
        curve_every=curves["relearning_every"],
    )

    result = outcome(record)
    # A model that collapsed during unlearning stays marked as collapsed after relearning.
    if unlearned_record.get("collapsed"):
        result["collapsed"] = True
    recorder.extra.update(result, training=record.steps, precision=job.precision.record())
    save_trained(job.model, job.tokenizer, out_dir, recorder, group, base_checkpoint=base_dir)
    if group.main:
        write_json(
            curve_path, {"collapsed": result["collapsed"], "steps": [{"step": 0, **unlearned}, *record.evaluations]}
        )
        write_json(
            reversal_path,
            {
                "collapsed": result["collapsed"],
                "control": control_kind,
                "matched_steps": matched,
                "unlearned": unlearned,
                "budgets": budgets,
                "held_out": held_out,
                "quantization": quantized,
            },
        )
        model, tokenizer = relearned_whole(job, out_dir, base_dir is not None, group, device)
        capture(model.to(job.precision.compute), tokenizer, checkpoint_dir=out_dir, out_path=captures["relearned"])


def probe_sets(data_dir: PathLike, n_requests: int, retain_samples: int) -> dict[str, list[dict]]:
    """The samples accuracy is measured on (cell_data.py)."""
    return {
        "forget": cell_data.forgotten(data_dir, n_requests),
        "retain": cell_data.retain_probe(data_dir, retain_samples),
        "unseen": cell_data.control_set(data_dir, n_requests),
    }


def load_unlearned(
    unlearned_dir: PathLike, device, precision: Precision, probes: Mapping[str, list[dict]], max_length: int
) -> ProbedModel:
    """The unlearned model in float32 (an adapter comes merged), with its probes as token ids."""
    model, tokenizer = load_checkpoint(unlearned_dir, device, WEIGHTS)
    return ProbedModel(
        model,
        tokenizer,
        precision,
        {name: tokenized(tokenizer, records, max_length) for name, records in probes.items()},
    )


def measure_unlearned(job: ProbedModel, bits: list[int], capture) -> tuple[dict, list[dict]]:
    """The model the job starts from: its accuracies, those under quantization, and its capture
    (the weights cast to the compute dtype)."""
    unlearned = job.accuracy("forget", "retain", "unseen")
    quantized = quantization_measures(job.model, bits, job.accuracy, unlearned)
    capture(job.model.to(job.precision.compute), job.tokenizer)
    return unlearned, quantized


def adapter_base(unlearned_dir: PathLike, unlearned_record: Mapping) -> Path | None:
    """The base checkpoint under a LoRA cell's adapter (None for a full fine-tuning cell)."""
    if "base_checkpoint" not in unlearned_record:
        return None
    return Path(unlearned_dir).parent / unlearned_record["base_checkpoint"]


def load_to_train(job: ProbedModel, unlearned_dir: PathLike, adapter: bool, group: sharding.Group, device) -> None:
    """Load the unlearned model again where the measured one cannot train as it is."""
    if adapter:
        # The adapter keeps training over its frozen base (the capture saw it merged).
        job.model, job.tokenizer = load_checkpoint(unlearned_dir, device, job.precision.compute, trainable_adapter=True)
    elif job.precision.mixed or group.sharded:
        # The capture's cast rounded it; sharded, every process loads it on the host to shard it.
        job.model, job.tokenizer = load_checkpoint(unlearned_dir, loading_device(group, device), WEIGHTS)


def relearned_whole(job: ProbedModel, out_dir: PathLike, adapter: bool, group: sharding.Group, device):
    """The relearned model whole, on one device: its adapter merged, or read back when sharded."""
    if adapter:
        return merge_adapter(job.model), job.tokenizer
    if group.sharded:
        return load_checkpoint(out_dir, device, job.precision.compute)
    return job.model, job.tokenizer
