"""Fisher histograms compared without torch, so that the diagnostics jobs start fast."""

from __future__ import annotations

import math

import numpy as np

# Log-spaced histogram bins shared by every layer and model, so histograms compare bin by bin.
BINS = np.logspace(-16, 2, 73)


def histogram_distance(base: np.ndarray, other: np.ndarray) -> float:
    """Jensen-Shannon distance between two Fisher histograms: the square root of their base-2
    Jensen-Shannon divergence, a metric in [0, 1] (0 for equal shapes, 1 for disjoint supports);
    NaN when either histogram is empty."""
    p, q = np.asarray(base, np.float64), np.asarray(other, np.float64)
    if p.sum() == 0 or q.sum() == 0:
        return math.nan
    p, q = p / p.sum(), q / q.sum()
    m = (p + q) / 2

    def kl(a, b):
        nonzero = a > 0
        return float((a[nonzero] * np.log2(a[nonzero] / b[nonzero])).sum())

    divergence = 0.5 * kl(p, m) + 0.5 * kl(q, m)
    return math.sqrt(min(max(divergence, 0.0), 1.0))  # rounding can step just outside [0, 1]
