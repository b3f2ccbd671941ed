"""Token-level metrics from captured token statistics: accuracy, loss, perplexity, MIA.

Accuracy is teacher-forced next-token argmax accuracy over non-pad targets, pooled over tokens
(a long sample weighs more than a short one). Membership inference scores each sample; its AUC
tells forget samples (members) from holdout samples (non-members), so 0.5 means the attacker
cannot tell them apart and values below 0.5 mean forget samples look *less* familiar than unseen
ones (a collapsed model).
"""

from __future__ import annotations

import math
from typing import Mapping

import numpy as np


def split_metrics(stats: Mapping[str, np.ndarray]) -> dict[str, float]:
    mask = stats["mask"].astype(bool)
    n_tokens = int(mask.sum())
    loss = float(-stats["logprob"][mask].mean()) if n_tokens else math.nan
    return {
        "accuracy": float(stats["correct"][mask].mean()) if n_tokens else math.nan,
        "loss": loss,
        "perplexity": math.exp(loss) if math.isfinite(loss) and loss < 700 else math.inf,
        "n_samples": int(mask.shape[0]),
        "n_tokens": n_tokens,
    }


def select_rows(stats: Mapping[str, np.ndarray], rows: np.ndarray) -> dict[str, np.ndarray]:
    return {name: value[rows] for name, value in stats.items()}


def sample_loss(stats: Mapping[str, np.ndarray]) -> np.ndarray:
    """Mean negative log-likelihood of each sample's real targets."""
    mask = stats["mask"].astype(bool)
    return -(stats["logprob"] * mask).sum(1) / np.maximum(mask.sum(1), 1)


def auc(member_scores: np.ndarray, nonmember_scores: np.ndarray) -> float:
    """ROC AUC of telling members (label 1) from non-members by score (higher = member)."""
    from sklearn.metrics import roc_auc_score

    scores = np.concatenate([member_scores, nonmember_scores])
    if not np.isfinite(scores).all():
        return math.nan
    labels = np.concatenate([np.ones(len(member_scores)), np.zeros(len(nonmember_scores))])
    return float(roc_auc_score(labels, scores))


def per_sequence_accuracy(stats: Mapping[str, np.ndarray]) -> float:
    """The mean over samples of each sample's token accuracy (every sample weighs the same)."""
    mask = stats["mask"].astype(bool)
    counts = mask.sum(1)
    real = counts > 0
    return float(((stats["correct"] & mask).sum(1)[real] / counts[real]).mean()) if real.any() else math.nan


# --------------------------------------------------------------------------- membership inference
# Each attack is a per-sample score, higher meaning "member"; the AUC machinery is shared.


def loss_score(stats: Mapping[str, np.ndarray], **_) -> np.ndarray:
    """LOSS (Yeom et al. 2018): minus the sample's mean token NLL."""
    return -sample_loss(stats)


def zlib_score(stats: Mapping[str, np.ndarray], zlib_bytes: np.ndarray, **_) -> np.ndarray:
    """zlib (Carlini et al. 2021): minus the ratio of the sample's mean token NLL to its
    zlib-compressed length in bytes: text easy for the model but not for zlib looks member."""
    return -sample_loss(stats) / np.maximum(np.asarray(zlib_bytes, np.float64), 1)


def min_k_score(stats: Mapping[str, np.ndarray], k: float = 0.2, **_) -> np.ndarray:
    """Min-K% (Shi et al. 2024): the mean log-probability of the sample's k% least likely tokens."""
    return _lowest_fraction_mean(stats["logprob"], stats["mask"], k)


def min_k_plus_plus_score(stats: Mapping[str, np.ndarray], k: float = 0.2, **_) -> np.ndarray:
    """Min-K%++ (Zhang et al. 2024): Min-K% of (log p(x_t) - mu_t) / sigma_t, where mu_t and
    sigma_t are the mean and standard deviation of log p under the model's next-token
    distribution at position t."""
    z = (stats["logprob"] - stats["mu"]) / np.maximum(stats["sigma"], 1e-12)
    return _lowest_fraction_mean(z, stats["mask"], k)


def _lowest_fraction_mean(values: np.ndarray, mask: np.ndarray, k: float) -> np.ndarray:
    mask = mask.astype(bool)
    scores = np.full(len(values), np.nan)
    for row in range(len(values)):
        real = np.sort(values[row][mask[row]])
        if len(real):
            scores[row] = real[: max(1, int(math.ceil(k * len(real))))].mean()
    return scores


ATTACKS = {"loss": loss_score, "zlib": zlib_score, "min_k": min_k_score, "min_k_plus_plus": min_k_plus_plus_score}


def attack_aucs(
    forget: Mapping[str, np.ndarray],
    holdout: Mapping[str, np.ndarray],
    forget_zlib: np.ndarray,
    holdout_zlib: np.ndarray,
    k: float,
) -> dict[str, float]:
    """AUC of every attack at telling forget samples (members) from holdout samples."""
    return {
        name: auc(score(forget, zlib_bytes=forget_zlib, k=k), score(holdout, zlib_bytes=holdout_zlib, k=k))
        for name, score in ATTACKS.items()
    }


def loss_attack(forget: Mapping[str, np.ndarray], holdout: Mapping[str, np.ndarray]) -> float:
    """LOSS attack AUC: a lower loss means a member."""
    return auc(loss_score(forget), loss_score(holdout))


def privacy_leak(stage_auc: float, base_auc: float) -> float:
    """Relative change of an attack's AUC against the base model's, (AUC - AUC_base) / AUC_base:
    0 means the stage leaks membership as much as the model that trained on the forget set."""
    if not (math.isfinite(stage_auc) and math.isfinite(base_auc)) or base_auc == 0:
        return math.nan
    return (stage_auc - base_auc) / base_auc


# --------------------------------------------------------------------------- regimes
# A model that never trained on the forget set still predicts some of its tokens (its accuracy on
# never-seen samples); only the memorisation gap above that level, base F.Acc minus never-seen
# accuracy, can be forgotten or come back, so forgetting and recovery are shares of it.

UNDETERMINED = "undetermined"
NO_GAP = "no memorisation gap"
NOT_FORGOTTEN = "not forgotten"


def regime(outcome: Mapping[str, float | None], thresholds: Mapping[str, float]) -> dict[str, object]:
    """Sort a cell's outcome into the paper's regimes, as the paper judges it and against a control.

    `outcome` holds accuracies: `forget_base`, `never_seen` (the base model on never-seen
    samples), `forget_unlearned`, and of the relearning budget matched to the forget set
    `forget_relearned_matched` (raw F.Acc), `forget_gain_matched` (relearned minus unlearned) and
    `controlled_recovery_matched` (that gain minus the control's); `retain_base`, `retain_unlearned`.
    With gap = forget_base - never_seen:

    forgetting:   (forget_base - forget_unlearned) / gap; above 1 the model fell below the
                  never-seen level, which is damage (`damage` = never_seen - forget_unlearned)
    forgotten:    forgetting >= forgotten_share
    reversible:   forgotten, and the F.Acc after relearning is back above the never-seen level by
                  reversible_share of the gap: the raw relearned F.Acc in the paper's view, the
                  unlearned F.Acc + the controlled recovery in the controlled view
    catastrophic: retain_unlearned < catastrophic_share x retain_base

    A gap <= 0 (a base that did not memorise) gives the regime "no memorisation gap"; a missing
    or non-finite number one "undetermined".
    """
    gap = _difference(outcome["forget_base"], outcome["never_seen"])
    damage = _difference(outcome["never_seen"], outcome["forget_unlearned"])
    forgetting = _share(_difference(outcome["forget_base"], outcome["forget_unlearned"]), gap)
    restored_paper = _share(_difference(outcome["forget_relearned_matched"], outcome["never_seen"]), gap)
    restored_controlled = _share(
        _difference(_sum(outcome["forget_unlearned"], outcome["controlled_recovery_matched"]), outcome["never_seen"]),
        gap,
    )
    forgotten = None if forgetting is None else forgetting >= thresholds["forgotten_share"]
    catastrophic = (
        None
        if not _known(outcome["retain_base"], outcome["retain_unlearned"])
        else outcome["retain_unlearned"] < thresholds["catastrophic_share"] * outcome["retain_base"]
    )
    reversible_paper = _reversible(forgotten, restored_paper, thresholds["reversible_share"])
    reversible_controlled = _reversible(forgotten, restored_controlled, thresholds["reversible_share"])
    return {
        "memorisation_gap": gap,
        "forgetting": forgetting,
        "damage": None if damage is None else max(damage, 0.0),
        "damaged": None if damage is None else damage > 0,
        "raw_recovery_share": _share(outcome["forget_gain_matched"], gap),
        "controlled_recovery_share": _share(outcome["controlled_recovery_matched"], gap),
        "restored_paper": restored_paper,
        "restored_controlled": restored_controlled,
        "forgotten": forgotten,
        "catastrophic": catastrophic,
        "reversible_paper": reversible_paper,
        "reversible_controlled": reversible_controlled,
        "regime_paper": regime_name(gap, forgotten, reversible_paper, catastrophic),
        "regime_controlled": regime_name(gap, forgotten, reversible_controlled, catastrophic),
    }


def regime_name(gap: float | None, forgotten: bool | None, reversible: bool | None, catastrophic: bool | None) -> str:
    """One of the paper's four regimes, or why the cell has none."""
    if gap is not None and gap <= 0:
        return NO_GAP
    if forgotten is False:
        return NOT_FORGOTTEN
    if forgotten is None or reversible is None or catastrophic is None:
        return UNDETERMINED
    return f"{'reversible' if reversible else 'irreversible'}, {'catastrophic' if catastrophic else 'retain kept'}"


HIDDEN, DELETED, NOT_MEASURED = "hidden", "deleted", "not measured"


def held_out_regime(outcome: Mapping[str, float | None], thresholds: Mapping[str, float]) -> dict[str, object]:
    """Hidden or deleted, judged on the forgotten samples relearning never saw (reversal.py).

    `outcome` holds `forget_base`, `never_seen`, `forget_unlearned` (as in `regime`), and of the
    held-out run `forget_unlearned_held_out` (the unlearned F.Acc on the held-out part) and
    `latent_recovery` (its gain there beyond the control's), None without a held-out run. With
    the cell's memorisation gap:

    latent_recovery_share: latent_recovery / gap
    restored_held_out:     (forget_unlearned_held_out + latent_recovery - never_seen) / gap
    hidden:                forgotten, and restored_held_out >= reversible_share: samples the
                           attack never showed came back (the knowledge was hidden); `deleted`
                           when they did not
    """
    gap = _difference(outcome["forget_base"], outcome["never_seen"])
    forgetting = _share(_difference(outcome["forget_base"], outcome["forget_unlearned"]), gap)
    forgotten = None if forgetting is None else forgetting >= thresholds["forgotten_share"]
    restored = _share(
        _difference(_sum(outcome["forget_unlearned_held_out"], outcome["latent_recovery"]), outcome["never_seen"]),
        gap,
    )
    hidden = _reversible(forgotten, restored, thresholds["reversible_share"])
    if outcome["latent_recovery"] is None and forgotten:
        name = NOT_MEASURED
    elif gap is not None and gap <= 0:
        name = NO_GAP
    elif forgotten is False:
        name = NOT_FORGOTTEN
    elif hidden is None:
        name = UNDETERMINED
    else:
        name = HIDDEN if hidden else DELETED
    return {
        "latent_recovery": outcome["latent_recovery"],
        "latent_recovery_share": _share(outcome["latent_recovery"], gap),
        "restored_held_out": restored,
        "hidden": hidden,
        "regime_held_out": name,
    }


def _reversible(forgotten: bool | None, restored: float | None, share: float) -> bool | None:
    if forgotten is None or (forgotten and restored is None):
        return None
    return forgotten and restored >= share


def _known(*values) -> bool:
    return all(v is not None and math.isfinite(v) for v in values)


def _difference(a: float | None, b: float | None) -> float | None:
    return a - b if _known(a, b) else None


def _sum(a: float | None, b: float | None) -> float | None:
    return a + b if _known(a, b) else None


def _share(amount: float | None, gap: float | None) -> float | None:
    """`amount` in units of the memorisation gap; None without a positive gap."""
    return amount / gap if _known(amount, gap) and gap > 0 else None
