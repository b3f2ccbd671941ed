"""Summaries over seeds, agreement of categories, and the bootstrap over grid points and seeds."""

import math

import numpy as np
import pytest

from reversibility.prediction import bootstrap_interval, correlate, spearman
from reversibility.replicates import agreement, collapse, over_seeds, summarise

# Student's t, two-sided 95%, 2 degrees of freedom (any table: 4.303).
T_975_2DOF = 4.302652729911275


def test_the_interval_of_three_seeds_is_the_hand_worked_t_interval():
    # mean 2, sd 1 (n - 1), half width t * 1 / sqrt(3)
    summary = summarise([1.0, 2.0, 3.0])
    half = T_975_2DOF / math.sqrt(3)
    assert summary == pytest.approx({"mean": 2.0, "sd": 1.0, "low": 2.0 - half, "high": 2.0 + half, "seeds": 3})


def test_the_interval_matches_scipys_own_and_skips_missing_values():
    from scipy import stats

    values = [0.31, 0.42, 0.18, 0.27, 0.55]
    low, high = stats.t.interval(0.95, len(values) - 1, loc=np.mean(values), scale=stats.sem(values))
    summary = summarise([*values, None, "", math.nan])  # a collapsed seed's empty cells are not zeros
    assert summary["seeds"] == 5 and summary["sd"] == pytest.approx(np.std(values, ddof=1))
    assert (summary["low"], summary["high"]) == pytest.approx((low, high))


def test_one_seed_has_a_mean_and_no_spread():
    assert summarise(["0.5"]) == {"mean": 0.5, "sd": None, "low": None, "high": None, "seeds": 1}
    assert summarise([None])["seeds"] == 0


def rows(seeds_and_values, **key):
    return [{"method": "ga", "n": 1, **key, "seed": s, "acc": a, "regime": r} for s, a, r in seeds_and_values]


def test_over_seeds_gives_one_row_per_grid_point_and_measure():
    table = rows([(0, 0.2, "reversible"), (1, 0.4, "reversible")]) + rows([(0, 0.9, "forgotten")], method="npo")
    summaries = over_seeds(table, ["method", "n"])
    assert [(r["method"], r["measure"], r["seeds"]) for r in summaries] == [("ga", "acc", 2), ("npo", "acc", 1)]
    assert summaries[0]["mean"] == pytest.approx(0.3) and summaries[0]["sd"] == pytest.approx(math.sqrt(0.02))


def test_agreement_names_the_majority_and_how_many_seeds_give_it():
    table = rows([(0, 0.2, "reversible"), (1, 0.4, "irreversible"), (2, 0.3, "reversible")])
    (row,) = agreement(table, ["method", "n"], ["regime"])
    assert (row["value"], row["agreeing"], row["seeds"], row["label"]) == ("reversible", 2, 3, "reversible 2/3")
    # A tie goes to the lowest seed's value: the first given.
    (tie,) = agreement(table[:2], ["method", "n"], ["regime"])
    assert tie["label"] == "reversible 1/2"


def test_collapse_gives_figures_a_mean_with_its_interval_and_the_majority_category():
    table = rows([(0, 1.0, "a"), (1, 2.0, "b"), (2, 3.0, "b")])
    (row,) = collapse(table, ["method", "n"])
    assert row["acc"] == 2.0 and row["seeds"] == 3 and "seed" not in row
    assert (row["acc_low"], row["acc_high"]) == pytest.approx(
        (2 - T_975_2DOF / math.sqrt(3), 2 + T_975_2DOF / math.sqrt(3))
    )
    assert (row["regime"], row["regime_agreeing"]) == ("b", 2)


# --------------------------------------------------------------------------- bootstrap


def plain_bootstrap(x, y, resamples=1000, level=0.95, seed=0):
    """The percentile bootstrap over independent cells, written out on its own."""
    x, y = np.asarray(x), np.asarray(y)
    generator = np.random.default_rng(seed)
    values = []
    for _ in range(resamples):
        pick = generator.integers(0, len(x), len(x))
        rho = spearman(x[pick], y[pick])
        if math.isfinite(rho):
            values.append(rho)
    tail = 100 * (1 - level) / 2
    return np.percentile(values, tail), np.percentile(values, 100 - tail)


def test_with_one_seed_per_grid_point_the_bootstrap_is_the_plain_one():
    rng = np.random.default_rng(1)
    x = rng.normal(size=12)
    y = x + rng.normal(size=12)
    plain = plain_bootstrap(x, y)
    assert bootstrap_interval(x, y) == pytest.approx(plain, abs=0)
    assert bootstrap_interval(x, y, clusters=[f"point{i}" for i in range(12)]) == pytest.approx(plain, abs=0)


def test_seeds_of_one_grid_point_are_not_counted_as_independent_cells():
    # Six grid points whose (weakly related) diagnostic and recovery each seed repeats closely:
    # 24 cells, but only six independent draws. Treating them as 24 cells narrows the interval.
    rng = np.random.default_rng(3)
    point_x, point_y = rng.normal(size=6), rng.normal(size=6)
    x = np.repeat(point_x, 4) + 0.01 * rng.normal(size=24)
    y = np.repeat(point_y, 4) + 0.01 * rng.normal(size=24)
    points = np.repeat(np.arange(6), 4)
    naive_low, naive_high = bootstrap_interval(x, y)
    low, high = bootstrap_interval(x, y, clusters=points)
    assert high - low > 1.3 * (naive_high - naive_low)
    result = correlate(list(x), list(y), clusters=list(points))
    assert (result["cells"], result["grid_points"]) == (24, 6)
    assert (result["low"], result["high"]) == (low, high)


def test_correlate_counts_only_cells_and_grid_points_with_both_numbers():
    result = correlate([0.1, 0.2, None, 0.4, 0.5], [1.0, 2.0, 3.0, math.nan, 5.0], clusters=["a", "a", "b", "c", "d"])
    assert (result["cells"], result["grid_points"]) == (3, 2)
