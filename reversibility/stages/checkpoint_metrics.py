"""Stage `metrics` (and `metrics_base`): token metrics, membership-inference AUCs and benchmark
accuracies of one checkpoint, read from its capture (no torch)."""

from __future__ import annotations

import os

import numpy as np

from ..activations import Capture
from ..answers import is_correct
from ..io import write_json
from ..metrics import attack_aucs, per_sequence_accuracy, select_rows, split_metrics
from ..provenance import Recorder

PathLike = str | os.PathLike


def checkpoint_metrics(
    capture_path: PathLike, data_dir: PathLike, out_path: PathLike, *, n_requests: int, mia_k: float = 0.2
) -> None:
    """Token metrics, membership-inference AUCs and benchmark accuracies of one checkpoint, with the
    forget set of a cell with N = n_requests (the layout is in workflow/schemas/metrics.schema.yaml)."""
    recorder = Recorder(params={"n_requests": n_requests, "mia_k": mia_k}, inputs={"capture": capture_path})
    with Capture(capture_path) as cap:
        rows = cap.forget_rows(data_dir, n_requests)
        stats = {split: cap.token_stats(split) for split in ("forget", "retain", "holdout")}
        stats["forget"] = select_rows(stats["forget"], rows)
        zlib = {"forget": cap.zlib("forget")[rows], "holdout": cap.zlib("holdout")}
        collapsed = bool(cap.attr("collapsed", False))
        answered = cap.benchmarks()
    result = {split: {**split_metrics(s), "sequence_accuracy": per_sequence_accuracy(s)} for split, s in stats.items()}
    result["mia"] = attack_aucs(stats["forget"], stats["holdout"], zlib["forget"], zlib["holdout"], mia_k)
    result["benchmarks"] = benchmark_accuracy(answered) if answered else None
    result["collapsed"] = collapsed
    result["n_requests"] = n_requests
    write_json(out_path, result)
    recorder.write_beside(out_path)


def benchmark_accuracy(answered: dict[str, dict]) -> dict[str, dict]:
    """Per benchmark, the share of greedy solutions whose final answer is the reference's."""
    return {
        name: {
            "accuracy": float(
                np.mean([is_correct(g, a, b["answer_style"]) for g, a in zip(b["generations"], b["answers"])])
            ),
            "problems": len(b["ids"]),
            "answer_style": b["answer_style"],
        }
        for name, b in answered.items()
    }
