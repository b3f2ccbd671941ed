import itertools

import numpy as np
import pytest

from reversibility.metrics import auc, loss_attack, sample_loss, split_metrics


def test_accuracy_and_loss_count_real_targets_only():
    stats = {
        "mask": np.array([[1, 1, 0], [1, 0, 0]], dtype=bool),
        "correct": np.array([[1, 0, 1], [1, 1, 1]], dtype=bool),
        "logprob": np.log(np.array([[0.5, 0.25, 1.0], [0.5, 1.0, 1.0]])),
    }
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
    return {
        "logprob": logprobs,
        "mask": np.ones_like(logprobs, bool) if mask is None else np.asarray(mask, bool),
        "correct": np.zeros_like(logprobs, bool),
        "mu": np.zeros_like(logprobs) if mu is None else np.asarray(mu, float),
        "sigma": np.ones_like(logprobs) if sigma is None else np.asarray(sigma, float),
    }


def test_mia_scores_by_hand():
    from reversibility.metrics import loss_score, min_k_plus_plus_score, min_k_score, zlib_score

    stats = stats_of(
        [[-1.0, -2.0, -3.0, -4.0, -10.0], [-1.0, -1.0, -1.0, -1.0, -1.0]],
        mask=[[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]],
        mu=[[-1.0] * 5, [-2.0] * 5],
        sigma=[[2.0] * 5, [0.5] * 5],
    )
    np.testing.assert_allclose(loss_score(stats), [-4.0, -1.0])
    np.testing.assert_allclose(zlib_score(stats, zlib_bytes=np.array([8, 2])), [-0.5, -0.5])
    # k = 40%: the lowest 2 of 5 tokens of row 0; ceil(0.4 * 3) = 2 of row 1's 3 real tokens.
    np.testing.assert_allclose(min_k_score(stats, k=0.4), [-7.0, -1.0])
    # z = (logp - mu) / sigma: row 0 -> [0, -0.5, -1, -1.5, -4.5]; row 1 -> [2, 2, 2].
    np.testing.assert_allclose(min_k_plus_plus_score(stats, k=0.4), [-3.0, 2.0])


def test_per_sequence_accuracy_weighs_samples_equally():
    from reversibility.metrics import per_sequence_accuracy

    stats = {
        "mask": np.array([[1, 1, 1, 1], [1, 0, 0, 0]], bool),
        "correct": np.array([[1, 1, 1, 1], [0, 0, 0, 0]], bool),
    }
    assert per_sequence_accuracy(stats) == pytest.approx(0.5)
    assert split_metrics({**stats, "logprob": np.zeros((2, 4))})["accuracy"] == pytest.approx(0.8)


def test_privacy_leak_is_relative_to_the_base():
    from reversibility.metrics import privacy_leak

    assert privacy_leak(0.5, 1.0) == pytest.approx(-0.5)
    assert privacy_leak(1.0, 1.0) == 0.0
    assert np.isnan(privacy_leak(float("nan"), 1.0))


THRESHOLDS = {"forgotten_share": 0.5, "reversible_share": 0.7, "catastrophic_share": 0.5}


def outcome(**changes):
    """Base F.Acc 0.6 against 0.2 on never-seen samples: a memorisation gap of 0.4. Unlearning
    forgets all of it; the matched budget brings 0.35 back raw (0.875 of the gap above the
    never-seen level), 0.34 beyond its control (0.85)."""
    values = {
        "forget_base": 0.6,
        "never_seen": 0.2,
        "forget_unlearned": 0.2,
        "forget_relearned_matched": 0.55,
        "forget_gain_matched": 0.35,
        "controlled_recovery_matched": 0.34,
        "retain_base": 0.6,
        "retain_unlearned": 0.55,
    }
    return {**values, **changes}


@pytest.mark.parametrize(
    "changes, paper, controlled",
    [
        # Forgetting (0.6 - 0.5) / 0.4 = 0.25 < 0.5.
        ({"forget_unlearned": 0.5}, "not forgotten", "not forgotten"),
        ({}, "reversible, retain kept", "reversible, retain kept"),
        # R.Acc 0.2 < 0.5 x 0.6.
        ({"retain_unlearned": 0.2}, "reversible, catastrophic", "reversible, catastrophic"),
        # Raw: (0.3 - 0.2) / 0.4 = 0.25; controlled: 0.05 / 0.4 = 0.125.
        (
            {"forget_relearned_matched": 0.3, "forget_gain_matched": 0.1, "controlled_recovery_matched": 0.05},
            "irreversible, retain kept",
            "irreversible, retain kept",
        ),
        (
            {"forget_relearned_matched": 0.3, "controlled_recovery_matched": 0.05, "retain_unlearned": 0.0},
            "irreversible, catastrophic",
            "irreversible, catastrophic",
        ),
        # The paper's view sees (0.5 - 0.2) / 0.4 = 0.75 come back; beyond the control only 0.15 / 0.4.
        (
            {"forget_relearned_matched": 0.5, "controlled_recovery_matched": 0.15},
            "reversible, retain kept",
            "irreversible, retain kept",
        ),
        ({"forget_unlearned": None}, "undetermined", "undetermined"),
        ({"controlled_recovery_matched": float("nan")}, "reversible, retain kept", "undetermined"),
        ({"never_seen": 0.6}, "no memorisation gap", "no memorisation gap"),
        ({"never_seen": 0.7, "forget_unlearned": 0.0}, "no memorisation gap", "no memorisation gap"),
    ],
)
def test_regimes_in_the_paper_and_the_controlled_view_by_hand(changes, paper, controlled):
    from reversibility.metrics import regime

    result = regime(outcome(**changes), THRESHOLDS)
    assert (result["regime_paper"], result["regime_controlled"]) == (paper, controlled)


def test_forgetting_and_recovery_are_shares_of_the_memorisation_gap():
    from reversibility.metrics import regime

    result = regime(outcome(forget_relearned_matched=0.5, controlled_recovery_matched=0.15), THRESHOLDS)
    assert result["memorisation_gap"] == pytest.approx(0.4) and result["forgetting"] == pytest.approx(1.0)
    assert result["raw_recovery_share"] == pytest.approx(0.875)
    assert result["controlled_recovery_share"] == pytest.approx(0.375)
    assert result["restored_paper"] == pytest.approx(0.75) and result["restored_controlled"] == pytest.approx(0.375)
    assert result["reversible_paper"] is True and result["reversible_controlled"] is False
    assert result["forgotten"] is True and result["catastrophic"] is False
    assert result["damage"] == 0.0 and result["damaged"] is False


def test_forgetting_at_the_threshold_counts_and_below_it_does_not():
    from reversibility.metrics import regime

    # Gap 0.75 - 0.25 = 0.5; unlearned 0.5 is exactly half of it gone.
    at = regime(outcome(forget_base=0.75, never_seen=0.25, forget_unlearned=0.5), THRESHOLDS)
    assert at["forgetting"] == 0.5 and at["forgotten"] is True
    below = regime(outcome(forget_base=0.75, never_seen=0.25, forget_unlearned=0.5078125), THRESHOLDS)
    assert below["forgotten"] is False and below["reversible_paper"] is False


def test_falling_below_the_never_seen_level_is_damage():
    from reversibility.metrics import regime

    result = regime(outcome(forget_unlearned=0.05, forget_relearned_matched=0.5), THRESHOLDS)
    assert result["damaged"] is True and result["damage"] == pytest.approx(0.15)
    assert result["forgetting"] == pytest.approx(1.375)  # more than the gap: the excess is damage
    # Back to 0.5 is (0.5 - 0.2) / 0.4 = 0.75 of the gap above the never-seen level.
    assert result["restored_paper"] == pytest.approx(0.75) and result["regime_paper"] == "reversible, retain kept"
    assert result["restored_controlled"] == pytest.approx((0.05 + 0.34 - 0.2) / 0.4)
    assert result["regime_controlled"] == "irreversible, retain kept"


def test_a_base_without_memorisation_gap_has_no_shares():
    from reversibility.metrics import regime

    result = regime(outcome(never_seen=0.6, forget_unlearned=0.1), THRESHOLDS)
    assert result["memorisation_gap"] == pytest.approx(0.0)
    assert result["forgetting"] is None and result["forgotten"] is None
    assert result["raw_recovery_share"] is None and result["controlled_recovery_share"] is None
    assert result["reversible_paper"] is None and result["reversible_controlled"] is None
    assert result["damage"] == pytest.approx(0.5) and result["catastrophic"] is False


@pytest.mark.parametrize(
    "held_out, latent, expected",
    [
        # Gap 0.6 - 0.2 = 0.4; back to 0.1 + 0.3 = 0.4 is (0.4 - 0.2) / 0.4 = 0.5 < 0.7 of it: deleted.
        (0.1, 0.3, "deleted"),
        # 0.1 + 0.4 = 0.5: (0.5 - 0.2) / 0.4 = 0.75 of the gap, on samples relearning never saw.
        (0.1, 0.4, "hidden"),
        (0.1, None, "not measured"),
        (None, 0.4, "undetermined"),
    ],
)
def test_held_out_recovery_tells_hidden_from_deleted_by_hand(held_out, latent, expected):
    from reversibility.metrics import held_out_regime

    result = held_out_regime(outcome(forget_unlearned_held_out=held_out, latent_recovery=latent), THRESHOLDS)
    assert result["regime_held_out"] == expected
    if expected in ("hidden", "deleted"):
        assert result["latent_recovery_share"] == pytest.approx(latent / 0.4)
        assert result["restored_held_out"] == pytest.approx((held_out + latent - 0.2) / 0.4)
        assert result["hidden"] is (expected == "hidden")


def test_held_out_recovery_needs_a_forgotten_cell_with_a_gap():
    from reversibility.metrics import held_out_regime

    extra = {"forget_unlearned_held_out": 0.5, "latent_recovery": 0.4}
    assert held_out_regime(outcome(forget_unlearned=0.5, **extra), THRESHOLDS)["regime_held_out"] == "not forgotten"
    no_gap = held_out_regime(outcome(never_seen=0.6, **extra), THRESHOLDS)
    assert no_gap["regime_held_out"] == "no memorisation gap" and no_gap["latent_recovery_share"] is None
