"""A representation-level membership probe: can a linear classifier on a layer's pooled features
tell the forget samples (members) from holdout samples (non-members of the same domain)?

Beside the output-level membership inference attacks (`metrics.attack_aucs`) it shows when the
representation still knows what the output has stopped saying: an unlearned model whose LOSS
attack AUC is back near 0.5 but whose layers still separate forget from holdout samples hides the
forget set rather than deleting it.

Per layer, on the features of one capture (the capture's pooling, `capture.pooling`: the mean
over real tokens by default, or the last real token):

- balance: the first min(n_forget, n_holdout) samples of each class, in capture order, so that
  the AUC is not shaped by a class ratio and is the same at every run;
- a pipeline of `StandardScaler` and `LogisticRegression` (L2, fixed C, lbfgs with a bounded
  number of iterations), fitted inside each fold, so that the standardisation is learnt on the
  training folds only and a massive activation (one dimension 1e4 times the rest, as in real
  LLMs' residual streams) weighs no more than any other;
- stratified k-fold with k = min(folds, samples per class), shuffled with a fixed seed; the
  out-of-fold decision scores of all samples give one ROC AUC (`sklearn.metrics.roc_auc_score`),
  labels 1 for members, so 1 means forget samples score higher, 0.5 that the probe cannot tell
  them apart.

Fewer than 2 samples per class give no AUC (None), non-finite features (a collapsed model) NaN.
A fit that does not converge gives its AUC all the same, with a warning and `converged: false`.

Torch-free: the diagnostics jobs read captures only.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np

DEFAULTS = {"enabled": True, "folds": 5, "C": 1.0, "max_iter": 1000}
SEED = 0  # the folds' shuffle
MIN_PER_CLASS = 2


@dataclass(frozen=True)
class ProbeResult:
    auc: float | None  # None: too few samples; NaN: non-finite features
    samples_per_class: int
    folds: int  # 0 when no probe was fitted
    converged: bool
    reason: str = ""  # why there is no AUC


def balanced(members: np.ndarray, nonmembers: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Features and labels (1 = member) of the first min(n_members, n_nonmembers) samples of each
    class, members first."""
    n = min(len(members), len(nonmembers))
    features = np.concatenate([np.asarray(members[:n], np.float64), np.asarray(nonmembers[:n], np.float64)])
    return features, np.concatenate([np.ones(n, dtype=int), np.zeros(n, dtype=int)])


def fold_count(samples_per_class: int, folds: int = DEFAULTS["folds"]) -> int | None:
    """k of the stratified k-fold: min(folds, samples per class); None below 2 per class."""
    if samples_per_class < MIN_PER_CLASS:
        return None
    return min(folds, samples_per_class)


def classifier(C: float = DEFAULTS["C"], max_iter: int = DEFAULTS["max_iter"]):
    """The probe: standardised features, then an L2 logistic regression."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=max_iter, solver="lbfgs"))


def out_of_fold_scores(
    features: np.ndarray,
    labels: np.ndarray,
    folds: int,
    C: float = DEFAULTS["C"],
    max_iter: int = DEFAULTS["max_iter"],
    seed: int = SEED,
) -> tuple[np.ndarray, bool]:
    """Each sample's decision score (higher = member) from the probe fitted on the other folds,
    and whether every fit converged."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.model_selection import StratifiedKFold

    scores = np.empty(len(labels))
    converged = True
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    for train, test in splitter.split(features, labels):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ConvergenceWarning)
            probe = classifier(C, max_iter).fit(features[train], labels[train])
        converged &= not any(issubclass(w.category, ConvergenceWarning) for w in caught)
        scores[test] = probe.decision_function(features[test])
    return scores, converged


def probe_auc(
    members: np.ndarray,
    nonmembers: np.ndarray,
    *,
    folds: int = DEFAULTS["folds"],
    C: float = DEFAULTS["C"],
    max_iter: int = DEFAULTS["max_iter"],
    seed: int = SEED,
    name: str = "membership probe",
) -> ProbeResult:
    """The cross-validated ROC AUC of the probe telling `members` [n, d] from `nonmembers` [m, d]
    (see the module's docstring); `name` labels the warning of a fit that did not converge."""
    from sklearn.metrics import roc_auc_score

    features, labels = balanced(members, nonmembers)
    n = len(labels) // 2
    k = fold_count(n, folds)
    if k is None:
        reason = f"{n} sample(s) per class after balancing; the probe needs at least {MIN_PER_CLASS}"
        return ProbeResult(None, n, 0, True, reason)
    if not np.isfinite(features).all():
        return ProbeResult(math.nan, n, 0, True, "non-finite features")
    scores, converged = out_of_fold_scores(features, labels, k, C, max_iter, seed)
    if not converged:
        warnings.warn(
            f"{name}: the logistic regression did not converge in {max_iter} iterations "
            f"(C = {C}, {n} samples per class, {features.shape[1]} features); its AUC is kept",
            RuntimeWarning,
            stacklevel=2,
        )
    return ProbeResult(float(roc_auc_score(labels, scores)), n, k, converged)


def summarised(results: list[ProbeResult], pooling: str) -> dict:
    """Per-layer probe results as the diagnostics JSON holds them."""
    return {
        "pooling": pooling,
        "auc": [r.auc for r in results],
        "samples_per_class": results[0].samples_per_class if results else 0,
        "folds": results[0].folds if results else 0,
        "converged": [r.converged for r in results],
        "reason": next((r.reason for r in results if r.reason), ""),
    }
