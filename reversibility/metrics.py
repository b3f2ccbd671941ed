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


def loss_attack(forget: Mapping[str, np.ndarray], holdout: Mapping[str, np.ndarray]) -> float:
    """LOSS attack: a lower loss means a member."""
    return auc(-sample_loss(forget), -sample_loss(holdout))
