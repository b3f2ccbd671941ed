"""What the training jobs (`base_model`, `unlearn`, `relearn`) share: where a model that will
train is loaded, records as token ids, accuracy on probe sets, and the trained checkpoint with
its outcome."""

from __future__ import annotations

import os
from typing import Any, Mapping

from .. import sharding
from ..forward_pass import token_accuracy
from ..models import save_checkpoint
from ..provenance import Recorder
from ..tokenization import encode
from ..training import TrainRecord

PathLike = str | os.PathLike


def loading_device(group: sharding.Group, device):
    """Where a model that will train is loaded: the host when sharded (`fully_shard` moves each
    process's shard to its device), else the device itself."""
    return "cpu" if group.sharded else device


def tokenized(tokenizer, records: list[dict], max_length: int) -> list[list[int]]:
    return encode(tokenizer, [r["text"] for r in records], max_length)


def accuracies(model, probes: Mapping[str, list], pad_id: int) -> dict[str, dict]:
    """Token accuracy of the model on each named set of sequences."""
    result = {}
    for name, sequences in probes.items():
        counts = token_accuracy(model, sequences, pad_id, batch_size=32)
        counts["accuracy"] = counts["correct"] / counts["tokens"] if counts["tokens"] else None
        result[name] = counts
    return result


def outcome(record: TrainRecord) -> dict[str, Any]:
    return {
        "collapsed": record.collapsed,
        "collapse_step": record.collapse_step,
        "collapse_reason": record.collapse_reason,
    }


def save_trained(
    model,
    tokenizer,
    out_dir: PathLike,
    recorder: Recorder,
    group: sharding.Group,
    base_checkpoint: PathLike | None = None,
) -> None:
    """Write a trained model's checkpoint: every process calls it, the first writes (a sharded
    model's weights gathered whole)."""
    if group.sharded:
        recorder.extra["sharding"] = {"processes": group.size}
    weights = sharding.full_state_dict(model, group)
    if group.main:
        save_checkpoint(
            model, tokenizer, out_dir, recorder.record(), base_checkpoint=base_checkpoint, state_dict=weights
        )
