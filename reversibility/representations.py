"""Representation diagnostics as pure functions on feature arrays (features in, numbers out).

All take two views of the same n samples, X (the base model's) and Y (the updated model's),
[n, d] each, one layer at a time.

Linear CKA (Kornblith et al. 2019). With linear kernels K = X X^T and L = Y Y^T,
    CKA = HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L)).
The biased estimator uses HSIC_b = tr(K H L H) / (n - 1)^2 (H the centring matrix); in feature
space this is ||X_c^T Y_c||_F^2 with centred features. The unbiased estimator (Song et al. 2012,
as in Nguyen et al. 2021) uses the U-statistic
    HSIC_u = [tr(K~ L~) + (1^T K~ 1)(1^T L~ 1) / ((n-1)(n-2)) - 2/(n-2) 1^T K~ L~ 1] / (n (n-3)),
with K~, L~ the kernels with zeroed diagonals; it needs n >= 4. Both are computed from
accumulated sums (`CKAAccumulator`), so n can be large and features can come in minibatches;
when n is at most the width, the Gram form is cheaper and is used instead. CKA is 1 for identical
views and invariant to orthogonal transforms and isotropic scaling of either side.

Both estimators are also exactly invariant to translating either view: the biased one centres,
and translating X by c adds f(x_i) + f(x_j) + c.c (f(x) = x.c) to each K_ij, to which the
U-statistic is invariant. The sums are not: an LLM's residual stream has large constant offsets
and massive activations (a few dimensions 100-10000 times the rest), and the U-statistic's sums
then cancel catastrophically (an offset of 1e4 on every dimension moves the unbiased CKA by 0.05).
So `linear_cka` centres each view (subtracts its column means) before either form, and
`CKAAccumulator` shifts every minibatch by a fixed reference, the first minibatch's column means,
which changes nothing mathematically and leaves the sums nearly centred.

PCA similarity: |cos| between the first principal directions of X and Y (the sign of a principal
direction is arbitrary, so the absolute value), and the top-k subspace similarity
||U_k^T V_k||_F^2 / k, the mean squared cosine of the principal angles between the top-k
principal subspaces (robust when PC1 and PC2 have close variances and swap).

PCA shift: PCA fitted on the base features; both views projected with the base mean onto the
base's PC1 and PC2 (PC signs fixed by sklearn's convention: the largest loading is positive).
The base centroid is (0, 0); the updated centroid is (shift_pc1, pc2). Normalised by the spread
(standard deviation) of the base scores along each PC, the per-layer PCA distance is
    d_l = sqrt((shift_pc1 / sd_pc1)^2 + (shift_pc2 / sd_pc2)^2),
and the summary over layers is the mean PCA distance D = (1/L) sum_l d_l.
"""

from __future__ import annotations

import math

import numpy as np

# --------------------------------------------------------------------------- CKA


class CKAAccumulator:
    """Sufficient statistics of linear CKA between two views, accumulated over minibatches."""

    def __init__(self):
        self.n = 0
        self._sums: dict[str, np.ndarray | float] = {}
        self._reference: tuple[np.ndarray, np.ndarray] | None = None

    def update(self, x: np.ndarray, y: np.ndarray) -> "CKAAccumulator":
        x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
        if x.shape[0] != y.shape[0]:
            raise ValueError(f"CKA needs the same samples on both sides, got {x.shape[0]} and {y.shape[0]}")
        if x.shape[0] == 0:
            return self
        if self._reference is None:
            self._reference = (x.mean(0), y.mean(0))
        # CKA ignores translations; shifting by one fixed reference keeps the sums nearly centred.
        x, y = x - self._reference[0], y - self._reference[1]
        nx, ny = (x * x).sum(1), (y * y).sum(1)
        parts = {
            "sx": x.sum(0),
            "sy": y.sum(0),
            "xx": x.T @ x,
            "yy": y.T @ y,
            "xy": x.T @ y,
            "nx": nx.sum(),
            "ny": ny.sum(),
            "nxny": (nx * ny).sum(),
            "nx2": (nx * nx).sum(),
            "ny2": (ny * ny).sum(),
            "x_ny": x.T @ ny,
            "y_nx": y.T @ nx,
            "x_nx": x.T @ nx,
            "y_ny": y.T @ ny,
        }
        for key, value in parts.items():
            self._sums[key] = self._sums.get(key, 0) + value
        self.n += x.shape[0]
        return self

    def biased(self) -> float:
        s, n = self._sums, self.n
        mx, my = s["sx"] / n, s["sy"] / n
        cxy = s["xy"] - n * np.outer(mx, my)
        cxx = s["xx"] - n * np.outer(mx, mx)
        cyy = s["yy"] - n * np.outer(my, my)
        return _ratio(_frobenius2(cxy), _frobenius2(cxx), _frobenius2(cyy))

    def unbiased(self) -> float:
        if self.n < 4:
            return math.nan
        s = self._sums
        kl = self._hsic_u(
            _frobenius2(s["xy"]),
            s["nxny"],
            s["sx"] @ s["sx"] - s["nx"],
            s["sy"] @ s["sy"] - s["ny"],
            s["sx"] @ s["xy"] @ s["sy"],
            s["sx"] @ s["x_ny"],
            s["sy"] @ s["y_nx"],
        )
        kk = self._hsic_u(
            _frobenius2(s["xx"]),
            s["nx2"],
            s["sx"] @ s["sx"] - s["nx"],
            s["sx"] @ s["sx"] - s["nx"],
            s["sx"] @ s["xx"] @ s["sx"],
            s["sx"] @ s["x_nx"],
            s["sx"] @ s["x_nx"],
        )
        ll = self._hsic_u(
            _frobenius2(s["yy"]),
            s["ny2"],
            s["sy"] @ s["sy"] - s["ny"],
            s["sy"] @ s["sy"] - s["ny"],
            s["sy"] @ s["yy"] @ s["sy"],
            s["sy"] @ s["y_ny"],
            s["sy"] @ s["y_ny"],
        )
        if kk <= 0 or ll <= 0:
            return math.nan
        return float(kl / math.sqrt(kk * ll))

    def _hsic_u(self, tr_kl, diag_kl, sum_k, sum_l, k1_l1, k1_diag_l, l1_diag_k) -> float:
        """HSIC_u from traces and sums of the full kernels, removing their diagonals.

        tr(K~L~) = tr(KL) - sum_i K_ii L_ii;  1^T K~ 1 = 1^T K 1 - tr K;
        1^T K~ L~ 1 = (K1 - diag K) . (L1 - diag L).
        """
        n = self.n
        trace = tr_kl - diag_kl
        cross = k1_l1 - k1_diag_l - l1_diag_k + diag_kl
        return (trace + sum_k * sum_l / ((n - 1) * (n - 2)) - 2.0 / (n - 2) * cross) / (n * (n - 3))


def _frobenius2(matrix: np.ndarray) -> float:
    return float(np.square(matrix).sum())


def _ratio(cross: float, norm_x2: float, norm_y2: float) -> float:
    if norm_x2 <= 0 or norm_y2 <= 0:
        return math.nan
    return float(cross / math.sqrt(norm_x2 * norm_y2))


def linear_cka(x: np.ndarray, y: np.ndarray, unbiased: bool = False) -> float:
    """Linear CKA of two views; NaN when either view is constant or not finite."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"CKA needs the same samples on both sides, got {x.shape[0]} and {y.shape[0]}")
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        return math.nan
    x, y = _centred(x), _centred(y)  # CKA ignores translations; raw offsets would cancel in the sums
    if x.shape[0] <= max(x.shape[1], y.shape[1]):
        return _gram_cka(x @ x.T, y @ y.T, unbiased)
    accumulator = CKAAccumulator().update(x, y)
    return accumulator.unbiased() if unbiased else accumulator.biased()


def _centred(features: np.ndarray) -> np.ndarray:
    return features - features.mean(0) if len(features) else features


def _gram_cka(k: np.ndarray, l: np.ndarray, unbiased: bool) -> float:
    """CKA from n x n Gram matrices (cheaper than feature space when n <= d)."""
    if unbiased:
        return _ratio(hsic_unbiased(k, l), hsic_unbiased(k, k), hsic_unbiased(l, l))
    kc, lc = _centre_gram(k), _centre_gram(l)
    return _ratio(float((kc * lc).sum()), float((kc * kc).sum()), float((lc * lc).sum()))


def _centre_gram(k: np.ndarray) -> np.ndarray:
    return k - k.mean(0, keepdims=True) - k.mean(1, keepdims=True) + k.mean()


def hsic_unbiased(k: np.ndarray, l: np.ndarray) -> float:
    """The unbiased HSIC U-statistic from Gram matrices (Song et al. 2012, eq. 5)."""
    n = k.shape[0]
    if n < 4:
        return math.nan
    k, l = k - np.diag(np.diag(k)), l - np.diag(np.diag(l))
    one_k, one_l = k.sum(0), l.sum(0)
    value = (k * l).sum() + one_k.sum() * one_l.sum() / ((n - 1) * (n - 2)) - 2.0 / (n - 2) * (one_k @ one_l)
    return float(value / (n * (n - 3)))


# --------------------------------------------------------------------------- PCA


def principal_axes(x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean, top-k principal directions [k, d] (largest loading positive) and their variances."""
    x = np.asarray(x, np.float64)
    mean = x.mean(0)
    _, singular, vt = np.linalg.svd(x - mean, full_matrices=False)
    k = min(k, vt.shape[0])
    axes = vt[:k]
    signs = np.sign(axes[np.arange(k), np.abs(axes).argmax(1)])
    signs[signs == 0] = 1
    variances = singular[:k] ** 2 / max(len(x) - 1, 1)
    return mean, axes * signs[:, None], variances


def pca_similarity(x: np.ndarray, y: np.ndarray, k: int = 5) -> dict[str, float]:
    """|cos| of the first principal directions and the top-k subspace similarity."""
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        return {"pc1_cosine": math.nan, "subspace": math.nan}
    _, u, _ = principal_axes(x, k)
    _, v, _ = principal_axes(y, k)
    k = min(len(u), len(v))
    return {"pc1_cosine": float(abs(u[0] @ v[0])), "subspace": float(np.square(u[:k] @ v[:k].T).sum() / k)}


def pca_shift(x: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Centroid of the updated features in the base's PC1/PC2 coordinates, raw and normalised."""
    keys = ("shift_pc1", "pc2", "spread_pc1", "spread_pc2", "normalised_pc1", "normalised_pc2", "distance")
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        return dict.fromkeys(keys, math.nan)
    mean, axes, variances = principal_axes(x, 2)
    centroid = (np.asarray(y, np.float64) - mean).mean(0) @ axes.T
    spreads = np.sqrt(variances)
    shift = np.pad(centroid, (0, 2 - len(centroid)))
    spread = np.pad(spreads, (0, 2 - len(spreads)), constant_values=np.nan)
    normalised = np.divide(shift, spread, out=np.full(2, np.nan), where=spread > 0)
    return dict(
        zip(
            keys,
            map(
                float, (shift[0], shift[1], spread[0], spread[1], normalised[0], normalised[1], math.hypot(*normalised))
            ),
        )
    )


def mean_pca_distance(distances: list[float]) -> float:
    """D = (1/L) sum over layers of the normalised PCA distance d_l (NaN layers skipped)."""
    finite = [d for d in distances if d is not None and math.isfinite(d)]
    return float(np.mean(finite)) if finite else math.nan
