"""Which samples each stage of a cell trains on, and which it only measures.

A cell (`{model}/{dataset}/{method}/n{N}/lr{lr}/s{seed}`) draws every sample from its prepared splits
(data.py). With s = request_size:

- base model:   forget + retain + retain_eval (the whole forget pool, so every N shares one base)
- unlearning:   the forgotten samples (requests 1..N); retain terms train on `retain`; the
                fine-tuning baseline on `baseline.source`
- relearning:   `relearning.source` (the forgotten samples by default)
- measured only: the forgotten samples, `retain_eval` (R.Acc: samples the base model learned and
                no later stage trains on), the holdout (membership non-members) and the control
- held-out recovery: the forgotten samples split in two (`held_out_split`), relearning on the
                first part, measured on the second

The never-seen `unseen` split has three roles, each its own slice, so that a control stays a
control whatever else the config asks of the split:

    unseen[0, N s)        the control: never trained on by any stage of the cell
    unseen[N s, 2 N s)    relearning on `unseen` of the cell's own dataset
    unseen[2 N s, end)    the fine-tuning baseline on `unseen` of the cell's own dataset

Relearning on the cell's own forgotten samples is measured against a separate control run (the
same budget spent on the control slice, measured there: what any relearning teaches). Relearning
on anything else (retain, unseen, another domain) is a transfer: its control is the same run
measured on the control slice (`same_run`).
"""

from __future__ import annotations

import os
from pathlib import Path

from . import data
from .sources import DataError

PathLike = str | os.PathLike

SEPARATE_RUN, SAME_RUN = "separate_run", "same_run"


def request_size(data_dir: PathLike) -> int:
    return int(data.load_manifest(data_dir)["requests"]["size"])


def forgotten(data_dir: PathLike, n_requests: int) -> list[dict]:
    """The samples of requests 1..N (the cell's forget set)."""
    return data.requested(data.load_split(data_dir, "forget"), n_requests)


def unseen_slice(data_dir: PathLike, role: str, n_requests: int) -> list[dict]:
    """The part of the unseen split that `role` (control, relearning, baseline) owns at N."""
    size = n_requests * request_size(data_dir)
    start, stop = {"control": (0, size), "relearning": (size, 2 * size), "baseline": (2 * size, None)}[role]
    unseen = data.load_split(data_dir, "unseen")
    part = unseen[start:stop]
    if len(part) < (size if stop is not None else 1):
        wanted = f"samples [{start}, {stop})" if stop is not None else f"samples from {start} on"
        raise DataError(
            f"{data_dir}: the unseen split holds {len(unseen)} samples; the {role} at N = {n_requests} "
            f"needs {wanted} of it (datasets.<name>.unseen)"
        )
    return part


def control_set(data_dir: PathLike, n_requests: int) -> list[dict]:
    """Never-seen samples of the cell's domain, as many as it forgot, that no stage trains on."""
    return unseen_slice(data_dir, "control", n_requests)


def held_out_split(data_dir: PathLike, n_requests: int) -> tuple[list[dict], list[dict]]:
    """The cell's forgotten samples as (relearned part, held-out part): by request at N >= 2 (the
    first ceil(N / 2) requests relearned, the others held out), by sample within the request at
    N = 1 (its first ceil(s / 2) samples relearned). A held-out sample shares no request with a
    relearned one wherever N allows it."""
    samples = forgotten(data_dir, n_requests)
    if n_requests >= 2:
        relearned_requests = -(-n_requests // 2)
        return (
            [r for r in samples if r["request"] <= relearned_requests],
            [r for r in samples if r["request"] > relearned_requests],
        )
    if len(samples) < 2:
        raise DataError(
            f"{data_dir}: a request of {len(samples)} sample cannot be split into a relearned and a held-out "
            "part (datasets.<name>.request_size >= 2, or relearning.held_out: false)"
        )
    half = -(-len(samples) // 2)
    return samples[:half], samples[half:]


def control_kind(data_dir: PathLike, source_data_dir: PathLike, source: str) -> str:
    """`separate_run` when relearning trains on the cell's own forgotten samples, else `same_run`."""
    return SEPARATE_RUN if source == "forget" and _same(data_dir, source_data_dir) else SAME_RUN


def relearning_set(data_dir: PathLike, source_data_dir: PathLike, source: str, n_requests: int) -> list[dict]:
    """What relearning trains on: the cell's forgotten samples, or as many samples of another
    split or domain (the same amount of data, so budgets compare)."""
    forgotten_samples = forgotten(data_dir, n_requests)
    if source == "forget" and _same(data_dir, source_data_dir):
        return forgotten_samples
    if source == "unseen" and _same(data_dir, source_data_dir):
        return unseen_slice(data_dir, "relearning", n_requests)
    pool = data.load_split(source_data_dir, source)
    if source == "forget":
        pool = data.requested(pool, n_requests)
    if len(pool) < len(forgotten_samples):
        raise DataError(
            f"{source_data_dir}: the {source} split holds {len(pool)} samples, fewer than "
            f"the {len(forgotten_samples)} forgotten ones it stands in for (relearning.source)"
        )
    return pool[: len(forgotten_samples)]


def baseline_set(data_dir: PathLike, source_data_dir: PathLike, source: str, n_requests: int) -> list[dict]:
    """What the fine-tuning baseline trains on with the unlearning budget."""
    if source == "unseen" and _same(data_dir, source_data_dir):
        return unseen_slice(data_dir, "baseline", n_requests)
    return data.load_split(source_data_dir, source)


def retain_probe(data_dir: PathLike, count: int) -> list[dict]:
    """The retain samples R.Acc is measured on: learned by the base model, trained on by nothing
    after it."""
    return data.load_split(data_dir, "retain_eval")[:count]


def _same(a: PathLike, b: PathLike) -> bool:
    return Path(a).resolve() == Path(b).resolve()


def fisher_counts(fisher_samples: int, size: int, n_requests: int | None = None) -> list[int]:
    """The prefixes of the forget pool (in request order) a capture's Fisher is summarised on.

    A cell's model: the first request's samples (the set every cell of the model and dataset
    shares, so that a diagnostic compared across N sees the same samples) and the cell's forgotten
    samples (requests 1..N), each capped at `fisher_samples`. The base model (`n_requests` None):
    every request boundary up to `fisher_samples`, so that it matches any cell's two.
    """
    if not fisher_samples:
        return []
    bounds = range(1, -(-fisher_samples // size) + 1) if n_requests is None else (1, n_requests)
    return sorted({min(fisher_samples, k * size) for k in bounds})
