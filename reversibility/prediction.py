"""Does structure predict reversibility? Rank correlations across the cells of a grid.

For each diagnostic of the unlearned model against the base model (mean CKA over layers, mean
PCA distance and mean Fisher JS distance on the samples all cells of a model and dataset share,
and the forgetting share), the Spearman correlation with the controlled recovery share of the
same cells, with a percentile bootstrap interval (cells resampled with replacement). Which cells
are correlated together is decided in tables.py (`prediction_groups`, `CELL_SETS`).
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
    x: Sequence[float], y: Sequence[float], resamples: int = 1000, level: float = 0.95, seed: int = 0
) -> tuple[float, float]:
    """Percentile interval of rho over resampled cells (resamples with a constant side skipped)."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    generator = np.random.default_rng(seed)
    values = []
    for _ in range(resamples):
        pick = generator.integers(0, len(x), len(x))
        rho = spearman(x[pick], y[pick])
        if math.isfinite(rho):
            values.append(rho)
    if not values:
        return math.nan, math.nan
    tail = (1 - level) / 2 * 100
    return float(np.percentile(values, tail)), float(np.percentile(values, 100 - tail))


def correlate(diagnostic: Sequence[float | None], recovery: Sequence[float | None], seed: int = 0) -> dict:
    """rho, its bootstrap interval and the number of cells where both numbers exist."""
    pairs = [
        (d, r)
        for d, r in zip(diagnostic, recovery)
        if d is not None and r is not None and math.isfinite(d) and math.isfinite(r)
    ]
    if len(pairs) < 3:
        return {"spearman": math.nan, "low": math.nan, "high": math.nan, "cells": len(pairs)}
    x, y = zip(*pairs)
    low, high = bootstrap_interval(x, y, seed=seed)
    return {"spearman": spearman(x, y), "low": low, "high": high, "cells": len(pairs)}
