"""Where results live (the concrete paths of the rules' output patterns).

Aggregating stages (tables) read many per-cell files; these functions name them the same way
the rules' outputs do, below `results/`.
"""

from __future__ import annotations

from typing import Iterable

from .config import Cell

RESULTS = "results"


def metrics_json(cell: Cell, stage: str, results: str = RESULTS) -> str:
    """Token metrics of a stage; the base model's are per base replicate and N (they depend on
    the forget set)."""
    if stage == "base":
        return f"{results}/metrics/{cell.base_key}/base/n{cell.n_requests}.json"
    return f"{results}/metrics/{cell.key}/{stage}.json"


def diagnostics_json(cell: Cell, stage: str, results: str = RESULTS) -> str:
    return f"{results}/diagnostics/{cell.key}/{stage}.json"


def curve_json(cell: Cell, kind: str, results: str = RESULTS) -> str:
    """Per-cell measures of kind `requests` (accuracies after each request), `relearning`
    (accuracies along relearning) or `reversal` (controlled recovery per attack budget and
    quantization)."""
    return f"{results}/metrics/{cell.key}/{kind}.json"


def local_results(inputs: Iterable[str], cell: Cell) -> str:
    """The folder in which a job finds its `results/` inputs: `results` itself on a shared
    filesystem, or the local copy of a remote store (Snakemake fetches declared inputs below its
    storage prefix, e.g. `.snakemake/storage/s3/<bucket>/results`). Read off the local path of
    `cell`'s base metrics among `inputs`."""
    declared = metrics_json(cell, "base")
    for path in map(str, inputs):
        if path == declared:
            return RESULTS
        if path.endswith("/" + declared):
            return path[: -len(declared)] + RESULTS
    raise ValueError(f"{declared} is not among the job's inputs")


def benchmark_dirs(inputs) -> dict[str, str]:
    """The folders of the prepared benchmarks among a job's named inputs (`benchmark_<name>`, the
    problems file; `benchmark_<name>_manifest` beside it)."""
    return {
        key.removeprefix("benchmark_"): str(path).rsplit("/", 1)[0]
        for key, path in inputs.items()
        if key.startswith("benchmark_") and not key.endswith("_manifest")
    }
