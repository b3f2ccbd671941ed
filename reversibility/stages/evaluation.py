"""Light stages on captures: token `metrics` and representation `diagnostics` (no torch)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .. import data
from ..activations import Capture
from ..io import write_json
from ..metrics import loss_attack, select_rows, split_metrics
from ..provenance import Recorder
from ..representations import linear_cka

PathLike = str | os.PathLike


def stage_metrics(capture_path: PathLike, data_dir: PathLike, out_path: PathLike, *,
                  n_requests: int) -> None:
    """Token metrics of one checkpoint, with the forget set of a cell with N = n_requests."""
    recorder = Recorder(params={"n_requests": n_requests}, inputs={"capture": capture_path})
    with Capture(capture_path) as cap:
        stats = {split: cap.token_stats(split) for split in ("forget", "retain", "holdout")}
        stats["forget"] = select_rows(stats["forget"], forget_rows(cap.ids("forget"), data_dir, n_requests))
        collapsed = bool(cap.attr("collapsed", False))
    result = {split: split_metrics(s) for split, s in stats.items()}
    result["mia"] = {"loss_auc": loss_attack(stats["forget"], stats["holdout"])}
    result["collapsed"] = collapsed
    result["n_requests"] = n_requests
    write_json(out_path, result)
    recorder.write_beside(out_path)


def forget_rows(capture_ids: list[str], data_dir: PathLike, n_requests: int) -> np.ndarray:
    """Rows of the captured forget pool that belong to requests 1..N."""
    wanted = {r["id"] for r in data.requested(data.load_split(data_dir, "forget"), n_requests)}
    rows = np.array([i for i, sample in enumerate(capture_ids) if sample in wanted])
    if len(rows) != len(wanted):
        raise ValueError(f"the capture holds {len(rows)} of the {len(wanted)} samples of requests "
                         f"1..{n_requests}: it was made from other data; rerun its capture rule")
    return rows


def diagnostics(base_capture: PathLike, stage_capture: PathLike, data_dir: PathLike,
                out_path: PathLike, *, n_requests: int) -> None:
    """Per-layer linear CKA of a checkpoint's features against the base model's, per split."""
    recorder = Recorder(params={"n_requests": n_requests},
                        inputs={"base": base_capture, "stage": stage_capture})
    with Capture(base_capture) as base, Capture(stage_capture) as stage:
        if base.layers != stage.layers:
            raise ValueError(f"{stage_capture}: its layers differ from those of {base_capture}")
        subsets = {"forget": forget_rows(base.ids("forget"), data_dir, n_requests),
                   "retain": slice(None), "holdout": slice(None)}
        cka: dict[str, list[float]] = {name: [] for name in (*subsets, "all")}
        for layer in range(len(base.layers)):
            views = {split: (base.features(split, layer)[rows], stage.features(split, layer)[rows])
                     for split, rows in subsets.items()}
            for split, (x, y) in views.items():
                cka[split].append(linear_cka(x, y))
            cka["all"].append(linear_cka(np.concatenate([x for x, _ in views.values()]),
                                         np.concatenate([y for _, y in views.values()])))
        result = {"layers": base.layers, "cka": cka, "collapsed": bool(stage.attr("collapsed", False)),
                  "n_requests": n_requests}
    write_json(out_path, result)
    recorder.write_beside(out_path)
