"""Does structure predict reversibility? Rank correlations across the cells of a grid.

For each diagnostic of the unlearned model against the base model (mean CKA over layers, mean
PCA distance and mean Fisher JS distance on the samples all cells of a model and dataset share,
and the forgetting share), the Spearman correlation with the controlled recovery share of the
same cells, with a percentile bootstrap interval. Replicates of a grid point (its seeds) are not
independent cells: the bootstrap resamples grid points, then the seeds within each one picked (a
two-stage, or cluster, bootstrap); with one seed per grid point that is the plain bootstrap over
cells. Which cells are correlated together is decided in tables.py (`prediction_groups`,
`CELL_SETS`).
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np


def ranks(values: Sequence[float]) -> np.ndarray:
    """Ranks from 1, ties sharing their average rank."""
    values = np.asarray(values, np.float64)
    order = values.argsort(kind="mergesort")
    ranked = np.empty(len(values))
    sorted_values = values[order]
    start = 0
    while start < len(values):
        end = start
        while end + 1 < len(values) and sorted_values[end + 1] == sorted_values[start]:
            end += 1
        ranked[order[start : end + 1]] = (start + end) / 2 + 1
        start = end + 1
    return ranked


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman's rho: the Pearson correlation of the ranks (NaN when either side is constant)."""
    rx, ry = ranks(x), ranks(y)
    rx, ry = rx - rx.mean(), ry - ry.mean()
    denominator = math.sqrt(float((rx * rx).sum() * (ry * ry).sum()))
    return float((rx * ry).sum() / denominator) if denominator > 0 else math.nan


def bootstrap_interval(
    x: Sequence[float],
    y: Sequence[float],
    resamples: int = 1000,
    level: float = 0.95,
    seed: int = 0,
    clusters: Sequence | None = None,
) -> tuple[float, float]:
    """Percentile interval of rho over resampled cells (resamples with a constant side skipped).

    `clusters`: each cell's grid point; grid points are drawn with replacement, then as many of a
    drawn point's cells (its seeds) with replacement from its own. None: every cell its own.
    """
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    members = _members(clusters if clusters is not None else range(len(x)))
    generator = np.random.default_rng(seed)
    values = []
    for _ in range(resamples):
        pick = np.concatenate(
            [_resample(members[g], generator) for g in generator.integers(0, len(members), len(members))]
        )
        rho = spearman(x[pick], y[pick])
        if math.isfinite(rho):
            values.append(rho)
    if not values:
        return math.nan, math.nan
    tail = (1 - level) / 2 * 100
    return float(np.percentile(values, tail)), float(np.percentile(values, 100 - tail))


def _members(clusters: Sequence) -> list[np.ndarray]:
    """The positions of each cluster's cells, clusters in the order they first appear."""
    positions: dict = {}
    for index, cluster in enumerate(clusters):
        positions.setdefault(cluster, []).append(index)
    return [np.asarray(p) for p in positions.values()]


def _resample(members: np.ndarray, generator: np.random.Generator) -> np.ndarray:
    # A single cell is its own resample: drawing nothing keeps the plain bootstrap's stream.
    return members if len(members) == 1 else members[generator.integers(0, len(members), len(members))]


def correlate(
    diagnostic: Sequence[float | None],
    recovery: Sequence[float | None],
    seed: int = 0,
    clusters: Sequence | None = None,
) -> dict:
    """rho over the cells where both numbers exist, its bootstrap interval (over `clusters`, each
    cell's grid point, when given), and how many cells and grid points it rests on."""
    clusters = list(clusters) if clusters is not None else list(range(len(diagnostic)))
    kept = [
        (d, r, c)
        for d, r, c in zip(diagnostic, recovery, clusters)
        if d is not None and r is not None and math.isfinite(d) and math.isfinite(r)
    ]
    counts = {"cells": len(kept), "grid_points": len({c for _, _, c in kept})}
    if len(kept) < 3:
        return {"spearman": math.nan, "low": math.nan, "high": math.nan, **counts}
    x, y, kept_clusters = zip(*kept)
    low, high = bootstrap_interval(x, y, seed=seed, clusters=kept_clusters)
    return {"spearman": spearman(x, y), "low": low, "high": high, **counts}
