"""Representation diagnostics as pure functions on feature arrays.

Linear CKA (Kornblith et al. 2019) between two views X [n, d1] and Y [n, d2] of the same n
samples: HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L)) with linear kernels, which after centring the
features equals ||Y^T X||_F^2 / (||X^T X||_F ||Y^T Y||_F). It is 1 for identical views and is
invariant to orthogonal transforms and isotropic scaling of either side.
"""

from __future__ import annotations

import math

import numpy as np


def centre(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x - x.mean(axis=0, keepdims=True)


def linear_cka(x: np.ndarray, y: np.ndarray) -> float:
    """Biased linear CKA; NaN when either view is constant or not finite."""
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"CKA needs the same samples on both sides, got {x.shape[0]} and {y.shape[0]}")
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        return math.nan
    x, y = centre(x), centre(y)
    if x.shape[0] <= max(x.shape[1], y.shape[1]):
        # Gram form: cheaper when there are fewer samples than features.
        k, l = x @ x.T, y @ y.T
        cross, norm_x, norm_y = (k * l).sum(), np.linalg.norm(k), np.linalg.norm(l)
    else:
        cross = np.linalg.norm(y.T @ x) ** 2
        norm_x, norm_y = np.linalg.norm(x.T @ x), np.linalg.norm(y.T @ y)
    if norm_x == 0 or norm_y == 0:
        return math.nan
    return float(cross / (norm_x * norm_y))
