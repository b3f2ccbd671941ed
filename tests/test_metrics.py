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


def stats_of(logprobs, mask=None, mu=None, sigma=None):
    logprobs = np.asarray(logprobs, float)
    return {"logprob": logprobs, "mask": np.ones_like(logprobs, bool) if mask is None else np.asarray(mask, bool),
            "correct": np.zeros_like(logprobs, bool),
            "mu": np.zeros_like(logprobs) if mu is None else np.asarray(mu, float),
            "sigma": np.ones_like(logprobs) if sigma is None else np.asarray(sigma, float)}


def test_mia_scores_by_hand():
    from reversibility.metrics import loss_score, min_k_plus_plus_score, min_k_score, zlib_score

    stats = stats_of([[-1.0, -2.0, -3.0, -4.0, -10.0], [-1.0, -1.0, -1.0, -1.0, -1.0]],
                     mask=[[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]],
                     mu=[[-1.0] * 5, [-2.0] * 5], sigma=[[2.0] * 5, [0.5] * 5])
    np.testing.assert_allclose(loss_score(stats), [-4.0, -1.0])
    np.testing.assert_allclose(zlib_score(stats, zlib_bytes=np.array([8, 2])), [-0.5, -0.5])
    # k = 40%: the lowest 2 of 5 tokens of row 0; ceil(0.4 * 3) = 2 of row 1's 3 real tokens.
    np.testing.assert_allclose(min_k_score(stats, k=0.4), [-7.0, -1.0])
    # z = (logp - mu) / sigma: row 0 -> [0, -0.5, -1, -1.5, -4.5]; row 1 -> [2, 2, 2].
    np.testing.assert_allclose(min_k_plus_plus_score(stats, k=0.4), [-3.0, 2.0])


def test_per_sequence_accuracy_weighs_samples_equally():
    from reversibility.metrics import per_sequence_accuracy

    stats = {"mask": np.array([[1, 1, 1, 1], [1, 0, 0, 0]], bool),
             "correct": np.array([[1, 1, 1, 1], [0, 0, 0, 0]], bool)}
    assert per_sequence_accuracy(stats) == pytest.approx(0.5)
    assert split_metrics({**stats, "logprob": np.zeros((2, 4))})["accuracy"] == pytest.approx(0.8)


def test_privacy_leak_is_relative_to_the_base():
    from reversibility.metrics import privacy_leak

    assert privacy_leak(0.5, 1.0) == pytest.approx(-0.5)
    assert privacy_leak(1.0, 1.0) == 0.0
    assert np.isnan(privacy_leak(float("nan"), 1.0))


@pytest.mark.parametrize("unlearned, relearned, expected", [
    ({"forget": 0.5, "retain": 0.6}, {"forget": 0.6, "retain": 0.6}, "not forgotten"),
    ({"forget": 0.1, "retain": 0.55}, {"forget": 0.5, "retain": 0.6}, "reversible, retain kept"),
    ({"forget": 0.05, "retain": 0.1}, {"forget": 0.45, "retain": 0.5}, "reversible, catastrophic"),
    ({"forget": 0.05, "retain": 0.5}, {"forget": 0.1, "retain": 0.5}, "irreversible, retain kept"),
    ({"forget": 0.0, "retain": 0.0}, {"forget": 0.0, "retain": 0.0}, "irreversible, catastrophic"),
    ({"forget": None, "retain": 0.0}, {"forget": 0.0, "retain": 0.0}, "undetermined"),
])
def test_regimes_on_constructed_metrics(unlearned, relearned, expected):
    from reversibility.metrics import regime

    thresholds = {"forgotten_share": 0.5, "reversible_share": 0.7, "catastrophic_share": 0.5}
    base = {"forget": 0.6, "retain": 0.6}
    assert regime(base, unlearned, relearned, thresholds)["regime"] == expected
