import itertools

import numpy as np
import pytest

from reversibility.metrics import auc, loss_attack, sample_loss, split_metrics


def test_accuracy_and_loss_count_real_targets_only():
    stats = {"mask": np.array([[1, 1, 0], [1, 0, 0]], dtype=bool),
             "correct": np.array([[1, 0, 1], [1, 1, 1]], dtype=bool),
             "logprob": np.log(np.array([[0.5, 0.25, 1.0], [0.5, 1.0, 1.0]]))}
    result = split_metrics(stats)
    assert result["accuracy"] == pytest.approx(2 / 3)
    assert result["loss"] == pytest.approx(-(np.log(0.5) * 2 + np.log(0.25)) / 3)
    assert result["perplexity"] == pytest.approx(np.exp(result["loss"]))
    assert result["n_tokens"] == 3 and result["n_samples"] == 2
    np.testing.assert_allclose(sample_loss(stats), [-(np.log(0.5) + np.log(0.25)) / 2, -np.log(0.5)])


def test_auc_agrees_with_a_brute_force_pairwise_count():
    rng = np.random.default_rng(0)
    members, nonmembers = rng.normal(1, 1, 40).round(1), rng.normal(0, 1, 30).round(1)
    wins = sum(1.0 if m > n else 0.5 if m == n else 0.0 for m, n in itertools.product(members, nonmembers))
    assert auc(members, nonmembers) == pytest.approx(wins / (40 * 30))


def test_loss_attack_scores_lower_loss_as_member():
    low = {"mask": np.ones((3, 2), bool), "logprob": np.full((3, 2), -0.1)}
    high = {"mask": np.ones((3, 2), bool), "logprob": np.full((3, 2), -3.0)}
    assert loss_attack(low, high) == 1.0 and loss_attack(high, low) == 0.0
