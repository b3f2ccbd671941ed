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


def attack_aucs(forget: Mapping[str, np.ndarray], holdout: Mapping[str, np.ndarray],
                forget_zlib: np.ndarray, holdout_zlib: np.ndarray, k: float) -> dict[str, float]:
    """AUC of every attack at telling forget samples (members) from holdout samples."""
    return {name: auc(score(forget, zlib_bytes=forget_zlib, k=k), score(holdout, zlib_bytes=holdout_zlib, k=k))
            for name, score in ATTACKS.items()}


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


def regime(base: Mapping[str, float], unlearned: Mapping[str, float], relearned: Mapping[str, float],
           thresholds: Mapping[str, float]) -> dict[str, object]:
    """Sort a cell's outcome into the paper's regimes from its forget and retain accuracies.

    forgotten:    unlearned F.Acc < forgotten_share x base F.Acc
    reversible:   forgotten, and relearned F.Acc >= reversible_share x base F.Acc
    catastrophic: unlearned R.Acc < catastrophic_share x base R.Acc
    """
    values = [base["forget"], unlearned["forget"], relearned["forget"], base["retain"], unlearned["retain"]]
    if any(v is None or not math.isfinite(v) for v in values):
        return {"forgotten": None, "reversible": None, "catastrophic": None, "regime": "undetermined"}
    forgotten = unlearned["forget"] < thresholds["forgotten_share"] * base["forget"]
    reversible = forgotten and relearned["forget"] >= thresholds["reversible_share"] * base["forget"]
    catastrophic = unlearned["retain"] < thresholds["catastrophic_share"] * base["retain"]
    if not forgotten:
        name = "not forgotten"
    else:
        name = f"{'reversible' if reversible else 'irreversible'}, {'catastrophic' if catastrophic else 'retain kept'}"
    return {"forgotten": forgotten, "reversible": reversible, "catastrophic": catastrophic, "regime": name}
