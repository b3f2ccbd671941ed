"""Numbers from real LLMs: residual streams with large constant offsets and massive activations
(a few dimensions hundreds to thousands of times the rest) must not move CKA, and the Fisher
histograms' distance is scipy's Jensen-Shannon distance."""

import itertools

import numpy as np
import pytest
from scipy.spatial.distance import jensenshannon

from reversibility.fisher_histograms import histogram_distance
from reversibility.representations import CKAAccumulator, linear_cka

SAMPLES = 512


def llm_like_views(width_x, width_y, seed=0):
    """Two views of 512 samples sharing a low-rank signal under noise (CKA about 0.6-0.75), the
    noise growing with the width so that the signal does not take over wide views."""
    rng = np.random.default_rng(seed)
    signal = rng.normal(size=(SAMPLES, 16))
    x = signal @ rng.normal(size=(16, width_x)) + 2.0 * np.sqrt(width_x / 64) * rng.normal(size=(SAMPLES, width_x))
    y = 4 * np.tanh(signal @ rng.normal(size=(16, width_y)) / 4) + 1.5 * np.sqrt(width_y / 64) * rng.normal(
        size=(SAMPLES, width_y)
    )
    return x, y


def quadruple_hsic_u(k, l):
    """The U-statistic as the mean of K_ij L_ij + K_ij L_qr - 2 K_ij L_iq over ordered distinct
    quadruples (i, j, q, r), each term's sum over (q, r) counted in closed form, so that n = 512
    is in reach (checked against the definition itself below)."""
    n = len(k)
    k, l = k - np.diag(np.diag(k)), l - np.diag(np.diag(l))
    rows, total = l.sum(1), l.sum()
    same_pair = (n - 2) * (n - 3) * l  # (q, r): any distinct rest
    other_pair = total - 2 * rows[:, None] - 2 * rows[None, :] + 2 * l  # L_qr, q != r, both outside {i, j}
    shared_i = (n - 3) * (rows[:, None] - l)  # L_iq, q outside {i, j}; r: n - 3
    return float((k * (same_pair + other_pair - 2 * shared_i)).sum() / (n * (n - 1) * (n - 2) * (n - 3)))


def trace_hsic(k, l):
    n = len(k)
    h = np.eye(n) - 1 / n
    return float(np.trace(k @ h @ l @ h))


def reference_cka(x, y, unbiased):
    """CKA from the definitions on centred float64 features (translation changes neither)."""
    x, y = x - x.mean(0), y - y.mean(0)
    k, l = x @ x.T, y @ y.T
    hsic = quadruple_hsic_u if unbiased else trace_hsic
    return hsic(k, l) / np.sqrt(hsic(k, k) * hsic(l, l))


def test_the_counted_u_statistic_is_the_u_statistic():
    from test_representations import direct_hsic_u

    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(8, 3)) + 2.0, rng.normal(size=(8, 5))
    k, l = x @ x.T, y @ y.T
    assert quadruple_hsic_u(k, l) == pytest.approx(direct_hsic_u(k, l), rel=1e-10)


def with_offsets(x, y, kind, size, seed=1):
    """The views with constant offsets: `size` on three dimensions of each ("few"), up to `size` on
    every dimension ("every"), or `size` on the massive activation and up to a tenth of it on every
    other dimension, as in a residual stream ("massive")."""
    rng = np.random.default_rng(seed)
    x, y = x.copy(), y.copy()
    if kind == "few":
        x[:, :3] += size
        y[:, 5:8] -= size
    elif kind == "every":
        x += size * rng.uniform(-1, 1, size=x.shape[1])
        y += size * rng.uniform(-1, 1, size=y.shape[1])
    else:
        x += size / 10 * rng.uniform(-1, 1, size=x.shape[1])
        y += size / 10 * rng.uniform(-1, 1, size=y.shape[1])
        x[:, 7] += size
        y[:, 2] -= size
    return x, y


def massive_activation_views(width_x, width_y, seed=0):
    """The views with one dimension each whose spread is 30 times the others', carrying a signal
    shared by both views, as massive activations do."""
    x, y = llm_like_views(width_x, width_y, seed)
    rng = np.random.default_rng(seed + 1)
    shared = rng.normal(size=SAMPLES)
    x[:, 7] = 30 * np.median(x.std(0)) * (shared + 0.5 * rng.normal(size=SAMPLES))
    y[:, 2] = 30 * np.median(y.std(0)) * (shared + 0.5 * rng.normal(size=SAMPLES))
    return x, y


SHAPES = [(64, 64), (64, 576), (576, 576)]  # 512 samples: n > d in feature space, n <= d as Grams
OFFSETS = [("few", 1e2), ("few", 1e3), ("few", 1e4), ("every", 1e3), ("every", 1e4), ("massive", 1e4)]


def views_for(kind, width_x, width_y):
    return massive_activation_views(width_x, width_y) if kind == "massive" else llm_like_views(width_x, width_y)


@pytest.mark.parametrize("unbiased", [False, True], ids=["biased", "unbiased"])
@pytest.mark.parametrize("width_x, width_y", SHAPES)
@pytest.mark.parametrize("kind, size", OFFSETS)
def test_cka_ignores_the_offsets_of_a_residual_stream(kind, size, width_x, width_y, unbiased):
    x, y = views_for(kind, width_x, width_y)
    expected = reference_cka(x, y, unbiased)
    assert 0.55 < expected < 0.8
    shifted_x, shifted_y = with_offsets(x, y, kind, size)
    assert linear_cka(shifted_x, shifted_y, unbiased=unbiased) == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("width_x, width_y", [(64, 64), (64, 576)])
@pytest.mark.parametrize("kind, size", OFFSETS)
def test_cka_accumulated_over_minibatches_ignores_the_offsets(kind, size, width_x, width_y):
    x, y = views_for(kind, width_x, width_y)
    shifted_x, shifted_y = with_offsets(x, y, kind, size)
    accumulator = CKAAccumulator()
    for start in range(0, SAMPLES, 100):  # 5 minibatches of 100 and one of 12
        accumulator.update(shifted_x[start : start + 100], shifted_y[start : start + 100])
    assert accumulator.n == SAMPLES
    assert accumulator.biased() == pytest.approx(reference_cka(x, y, unbiased=False), abs=1e-6)
    assert accumulator.unbiased() == pytest.approx(reference_cka(x, y, unbiased=True), abs=1e-6)


# --------------------------------------------------------------------------- Jensen-Shannon


def random_histograms(seed):
    """Pairs of 72-bin count histograms, with empty bins on one side, the other, or both."""
    rng = np.random.default_rng(seed)
    p, q = rng.integers(0, 1000, size=72), rng.integers(0, 1000, size=72)
    p[rng.random(72) < 0.3] = 0
    q[rng.random(72) < 0.3] = 0
    return p, q


@pytest.mark.parametrize("seed", range(8))
def test_histogram_distance_is_scipys_jensen_shannon_distance(seed):
    p, q = random_histograms(seed)
    assert (p == 0).any() and (q == 0).any() and ((p == 0) & (q > 0)).any() and ((q == 0) & (p > 0)).any()
    expected = jensenshannon(p, q, base=2)
    assert histogram_distance(p, q) == pytest.approx(expected, abs=1e-12)
    assert histogram_distance(q, p) == pytest.approx(expected, abs=1e-12)


def test_histogram_distance_is_zero_for_one_shape_and_one_for_disjoint_supports():
    p, _ = random_histograms(0)
    assert histogram_distance(p, p) == 0.0
    assert histogram_distance(p, 3 * p) == pytest.approx(0.0, abs=1e-7)
    left, right = np.zeros(72), np.zeros(72)
    left[:30], right[30:] = 5, 2
    assert histogram_distance(left, right) == pytest.approx(1.0, abs=1e-12)
    assert jensenshannon(left, right, base=2) == pytest.approx(1.0, abs=1e-12)
    assert np.isnan(histogram_distance(np.zeros(72), p))


def test_small_differences_are_not_squared_away():
    """The distance, not the divergence: near-equal histograms are at the divergence's square root."""
    p = np.full(72, 100.0)
    q = p.copy()
    q[0] += 10
    divergence = jensenshannon(p, q, base=2) ** 2
    assert divergence < 1e-4
    assert histogram_distance(p, q) == pytest.approx(np.sqrt(divergence), rel=1e-9)


def test_histogram_distance_is_a_metric_on_these_histograms():
    histograms = [random_histograms(seed)[0] for seed in range(5)]
    for a, b, c in itertools.permutations(histograms, 3):
        assert histogram_distance(a, c) <= histogram_distance(a, b) + histogram_distance(b, c) + 1e-12
