"""Stage `capture`: one forward pass per split -> pooled layers and token statistics in HDF5.

`capture_model` captures a model already in memory (the relearn stage captures the model it
starts from and the one it ends with); `capture_base` loads a checkpoint and captures it.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Mapping

from .. import data
from ..activations import write_capture
from ..capture import capture_split, layer_modules
from ..io import read_json
from ..models import load_checkpoint, pick_device
from ..provenance import CHECKPOINT_RECORD, Recorder
from ..runtime import configure_torch
from ..tokenization import encode

log = logging.getLogger(__name__)
PathLike = str | os.PathLike


def capture_model(model, tokenizer, checkpoint_dir: PathLike, data_dir: PathLike, out_path: PathLike, *,
                  capture_config: Mapping, max_length: int) -> None:
    """Capture the model saved at `checkpoint_dir` (already loaded) on every evaluation split."""
    log.info("capturing %s", checkpoint_dir)
    recorder = Recorder(params={"capture": dict(capture_config), "max_length": max_length},
                        inputs={"checkpoint": checkpoint_dir, "manifest": Path(data_dir) / "manifest.json"})
    device = next(model.parameters()).device
    captured = {}
    for split, records in evaluation_splits(data_dir, capture_config).items():
        sequences = encode(tokenizer, [r["text"] for r in records], max_length)
        features, stats = capture_split(model, sequences, tokenizer.pad_token_id, capture_config["batch_size"],
                                        capture_config["pooling"], max_length, device)
        captured[split] = {"ids": [r["id"] for r in records], "features": features, "stats": stats}
    checkpoint = read_json(Path(checkpoint_dir) / CHECKPOINT_RECORD)
    write_capture(out_path, [layer for layer, _ in layer_modules(model)], captured,
                  {"pooling": capture_config["pooling"], "max_length": max_length,
                   "collapsed": bool(checkpoint.get("collapsed", False)), "provenance": recorder.record()},
                  dtype=capture_config["dtype"])


def capture_base(checkpoint_dir: PathLike, data_dir: PathLike, out_path: PathLike, *,
                 capture_config: Mapping, max_length: int, threads: int) -> None:
    configure_torch(threads, 0)
    model, tokenizer = load_checkpoint(checkpoint_dir, pick_device())
    capture_model(model, tokenizer, checkpoint_dir, data_dir, out_path,
                  capture_config=capture_config, max_length=max_length)


def evaluation_splits(data_dir: PathLike, capture_config: Mapping) -> dict[str, list[dict]]:
    """The whole forget pool, the first `retain_samples` of retain, and the holdout."""
    return {"forget": data.load_split(data_dir, "forget"),
            "retain": data.load_split(data_dir, "retain")[: capture_config["retain_samples"]],
            "holdout": data.load_split(data_dir, "holdout")}
