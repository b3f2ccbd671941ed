"""The paper's qualitative claims, checked on a grid's tables.

Each claim of Xu et al. is read off the tidy tables (tables.py) and marked `holds`, `partly`,
`does not hold`, or `not testable here` when the grid has no cell that could show it, with the
numbers behind the verdict and the table and columns they come from. Per model; the fine-tuning
baseline is no unlearning method and is left out.
"""

from __future__ import annotations

import math
from statistics import fmean
from typing import Callable, Iterable, Mapping

HOLDS, PARTLY, DOES_NOT_HOLD, NOT_TESTABLE = "holds", "partly", "does not hold", "not testable here"
FINDING_COLUMNS = ["model", "claim", "verdict", "evidence", "read_from"]
BASELINE = "finetune"
OVER_FORGETTING, STABLER = ("ga", "rlabel"), ("ga_kl", "npo")


def finding_rows(
    regimes: list[dict], summary: list[dict], representations: list[dict], fisher: list[dict]
) -> list[dict]:
    """One row per model and claim."""
    rows = []
    for model in dict.fromkeys(r["model"] for r in regimes):
        cells = [r for r in regimes if r["model"] == model and r["method"] != BASELINE]
        signature = _unlearned_signature(model, summary, representations, fisher)
        for claim, check in CLAIMS.items():
            verdict, evidence, read_from = check(cells, signature)
            rows.append(
                {"model": model, "claim": claim, "verdict": verdict, "evidence": evidence, "read_from": read_from}
            )
    return rows


def single_unlearning_is_mostly_reversible(cells: list[dict], _signature) -> tuple[str, str, str]:
    forgot = [c for c in cells if _int(c["n_requests"]) == 1 and _flag(c["forgotten"])]
    read_from = "regimes.csv: n_requests = 1, forgotten, reversible_paper, reversible_controlled"
    singles = [c for c in cells if _int(c["n_requests"]) == 1]
    if not forgot:
        forgetting = _range([_number(c["forgetting"]) for c in singles])
        evidence = f"no N = 1 cell forgot (forgetting {forgetting} of the gap, {len(singles)} cells)"
        return NOT_TESTABLE, evidence, read_from
    paper = sum(_flag(c["reversible_paper"]) for c in forgot)
    controlled = sum(_flag(c["reversible_controlled"]) for c in forgot)
    # The verdict is the matched budget's; a longer primary budget is a stronger attack, shown beside it.
    back = sum(_number(c["forget_relearned"]) >= _number(c["forget_base"]) for c in forgot)
    verdict = HOLDS if 2 * paper > len(forgot) else PARTLY if paper else DOES_NOT_HOLD
    return (
        verdict,
        f"{paper} of {len(forgot)} N = 1 cells that forgot are reversible in the paper's view, "
        f"{controlled} against the control, after the matched budget; after the primary budget "
        f"{back} are back at or above the base F.Acc",
        read_from + ", forget_relearned, forget_base",
    )


def continual_unlearning_collapses(cells: list[dict], _signature) -> tuple[str, str, str]:
    """The same method and learning rate at the smallest and the largest N of the grid."""
    read_from = "regimes.csv: catastrophic, retain_unlearned / retain_base at the smallest and largest N"
    pairs = _pairs_across_n(cells)
    if not pairs:
        return NOT_TESTABLE, "no method and learning rate at two values of N", read_from
    few, many = zip(*pairs)
    catastrophic = [sum(_flag(c["catastrophic"]) for c in side) for side in (few, many)]
    kept = [fmean(_retain_kept(c) for c in side) for side in (few, many)]
    n_few, n_many = _int(few[0]["n_requests"]), _int(many[0]["n_requests"])
    evidence = (
        f"catastrophic in {catastrophic[0]} of {len(pairs)} cells at N = {n_few}, {catastrophic[1]} at "
        f"N = {n_many}; R.Acc kept {kept[0]:.2f} -> {kept[1]:.2f} of the base's"
    )
    if 2 * catastrophic[1] > len(pairs) and catastrophic[1] > catastrophic[0]:
        return HOLDS, evidence, read_from
    if kept[1] < kept[0] or catastrophic[1] > catastrophic[0]:
        return PARTLY, evidence, read_from
    return DOES_NOT_HOLD, evidence, read_from


def ga_and_rlabel_over_forget(cells: list[dict], _signature) -> tuple[str, str, str]:
    """GA and RLabel against GA+KL and NPO, in the grid points (dataset, N, lr) that have both."""
    read_from = "regimes.csv: forgetting, retain_unlearned / retain_base, by method"
    points: dict[tuple, dict[str, list[dict]]] = {}
    for cell in cells:
        side = "over" if cell["method"] in OVER_FORGETTING else "stable" if cell["method"] in STABLER else None
        if side:
            points.setdefault((cell["dataset"], cell["n_requests"], cell["learning_rate"]), {}).setdefault(
                side, []
            ).append(cell)
    compared = [p for p in points.values() if len(p) == 2]
    if not compared:
        return NOT_TESTABLE, "no grid point holds both GA or RLabel and GA+KL or NPO", read_from
    deeper = sum(_mean(p["over"], _forgetting) > _mean(p["stable"], _forgetting) for p in compared)
    costlier = sum(_mean(p["over"], _retain_kept) < _mean(p["stable"], _retain_kept) for p in compared)
    over = fmean(_mean(p["over"], _forgetting) for p in compared)
    stable = fmean(_mean(p["stable"], _forgetting) for p in compared)
    evidence = (
        f"in {len(compared)} grid points GA/RLabel forget more in {deeper} (mean forgetting {over:.2f} "
        f"against {stable:.2f} of the gap) and keep less R.Acc in {costlier}"
    )
    if 2 * deeper > len(compared) and 2 * costlier > len(compared):
        return HOLDS, evidence, read_from
    return (PARTLY if deeper or costlier else DOES_NOT_HOLD), evidence, read_from


# Each part of the representation signature of irreversible forgetting, with the direction the
# paper reports it in: +1 when irreversible cells should show more of the measure.
SIGNATURE = {
    "pc1_cosine": ("PCA rotation (PC1 |cos| lower)", -1),
    "mean_pca_distance": ("centroid drift", +1),
    "mean_cka": ("CKA drop", -1),
    "fisher_js": ("Fisher change (JS distance higher)", +1),
}


def irreversible_forgetting_moves_the_representations(cells: list[dict], signature) -> tuple[str, str, str]:
    """Cells that forgot irreversibly against those that forgot reversibly (the paper's view),
    each measure of the unlearned model against the base on the samples all cells share."""
    read_from = (
        "regimes.csv: regime_paper; representation_summary.csv and representations.csv (split common), "
        "fisher.csv (sample_set common): unlearned against base"
    )
    forgot = [c for c in cells if _flag(c["forgotten"]) and c["reversible_paper"] not in (None, "")]
    groups = {
        flag: [signature.get(_key(c), {}) for c in forgot if _flag(c["reversible_paper"]) == flag]
        for flag in (False, True)
    }
    if not groups[False] or not groups[True]:
        return (
            NOT_TESTABLE,
            f"{len(groups[False])} irreversible and {len(groups[True])} reversible cells among "
            "those that forgot: both are needed",
            read_from,
        )
    shown, parts = 0, []
    for measure, (label, direction) in SIGNATURE.items():
        irreversible, reversible = (_mean(groups[flag], lambda s: s.get(measure)) for flag in (False, True))
        if not (math.isfinite(irreversible) and math.isfinite(reversible)):
            parts.append(f"{label}: not measured")
            continue
        shown += direction * (irreversible - reversible) > 0
        parts.append(f"{label}: {irreversible:.2f} irreversible against {reversible:.2f} reversible")
    verdict = HOLDS if shown == len(SIGNATURE) else PARTLY if shown else DOES_NOT_HOLD
    return (
        verdict,
        f"{shown} of {len(SIGNATURE)} shown ({len(groups[False])} irreversible, {len(groups[True])} "
        f"reversible cells); " + "; ".join(parts),
        read_from,
    )


def relearning_can_exceed_the_base(cells: list[dict], _signature) -> tuple[str, str, str]:
    read_from = "regimes.csv: forget_relearned against forget_base, cells that forgot"
    forgot = [c for c in cells if _flag(c["forgotten"])]
    if not forgot:
        return NOT_TESTABLE, "no cell forgot", read_from
    above = [c for c in forgot if _number(c["forget_relearned"]) > _number(c["forget_base"])]
    margin = max((_number(c["forget_relearned"]) - _number(c["forget_base"]) for c in forgot), default=math.nan)
    evidence = (
        f"{len(above)} of {len(forgot)} cells that forgot end relearning above the base F.Acc "
        f"(largest margin {margin:+.3f})"
    )
    return (HOLDS if above else DOES_NOT_HOLD), evidence, read_from


def forgotten_samples_return_unseen(cells: list[dict], _signature) -> tuple[str, str, str]:
    """Deeb and Roger (2024): relearning part of the forgotten facts brings the others back."""
    read_from = "regimes.csv: regime_held_out, latent_recovery_share, cells that forgot"
    measured = [c for c in cells if _flag(c["forgotten"]) and c["regime_held_out"] in ("hidden", "deleted")]
    if not measured:
        return NOT_TESTABLE, "no cell that forgot has a held-out recovery", read_from
    hidden = sum(c["regime_held_out"] == "hidden" for c in measured)
    shares = [_number(c["latent_recovery_share"]) for c in measured]
    verdict = HOLDS if 2 * hidden > len(measured) else PARTLY if hidden else DOES_NOT_HOLD
    evidence = (
        f"{hidden} of {len(measured)} cells that forgot get their held-out forgotten samples back (hidden, "
        f"not deleted); latent recovery {_range(shares)} of the gap, mean {_finite_mean(shares):.2f}"
    )
    return verdict, evidence, read_from


CLAIMS: dict[str, Callable[[list[dict], Mapping], tuple[str, str, str]]] = {
    "single unlearning is mostly reversible": single_unlearning_is_mostly_reversible,
    "continual unlearning collapses": continual_unlearning_collapses,
    "GA and RLabel over-forget while GA+KL and NPO are stabler": ga_and_rlabel_over_forget,
    "irreversible forgetting shows as PCA rotation, centroid drift, CKA drop and Fisher change": (
        irreversible_forgetting_moves_the_representations
    ),
    "relearning can exceed the base": relearning_can_exceed_the_base,
    # Beyond the paper: relearning the forgotten samples themselves cannot tell recall from re-learning.
    "forgotten samples come back without being relearned": forgotten_samples_return_unseen,
}


def _unlearned_signature(
    model: str, summary: list[dict], representations: list[dict], fisher: list[dict]
) -> dict[tuple, dict[str, float]]:
    """Per cell, the unlearned model against the base on the common samples: mean CKA, mean PCA
    distance, mean PC1 |cos| over layers and mean Fisher JS distance over decoder layers."""
    signature: dict[tuple, dict[str, float]] = {}
    for row in summary:
        if row["model"] == model and row["stage"] == "unlearned" and row["split"] == "common":
            signature.setdefault(_key(row), {}).update(
                mean_cka=_number(row["mean_cka"]), mean_pca_distance=_number(row["mean_pca_distance"])
            )
    for measure, rows in (
        ("pc1_cosine", [r for r in representations if r["split"] == "common"]),
        ("fisher_js", [r for r in fisher if r["sample_set"] == "common"]),
    ):
        column = "pc1_cosine" if measure == "pc1_cosine" else "js_distance"
        values: dict[tuple, list[float]] = {}
        for row in rows:
            if row["model"] == model and row["stage"] == "unlearned":
                values.setdefault(_key(row), []).append(_number(row[column]))
        for key, found in values.items():
            signature.setdefault(key, {})[measure] = _finite_mean(found)
    return signature


def _pairs_across_n(cells: list[dict]) -> list[tuple[dict, dict]]:
    by_setting: dict[tuple, dict[int, dict]] = {}
    for cell in cells:
        by_setting.setdefault((cell["dataset"], cell["method"], cell["learning_rate"]), {})[
            _int(cell["n_requests"])
        ] = cell
    ns = sorted({_int(c["n_requests"]) for c in cells})
    if len(ns) < 2:
        return []
    return [(found[ns[0]], found[ns[-1]]) for found in by_setting.values() if ns[0] in found and ns[-1] in found]


def _key(row: Mapping) -> tuple:
    return tuple(str(row[c]) for c in ("model", "dataset", "method", "n_requests", "learning_rate"))


def _forgetting(cell: Mapping) -> float:
    return _number(cell["forgetting"])


def _retain_kept(cell: Mapping) -> float:
    base = _number(cell["retain_base"])
    return _number(cell["retain_unlearned"]) / base if base > 0 else math.nan


def _mean(items: Iterable, value: Callable) -> float:
    return _finite_mean([value(item) for item in items])


def _finite_mean(values: Iterable) -> float:
    finite = [v for v in values if v is not None and math.isfinite(v)]
    return fmean(finite) if finite else math.nan


def _range(values: list[float]) -> str:
    finite = [v for v in values if math.isfinite(v)]
    return f"{min(finite):.2f} to {max(finite):.2f}" if finite else "not measured"


def _flag(value) -> bool:
    return value is True or value == "True"


def _int(value) -> int:
    return int(float(value))


def _number(value) -> float:
    return math.nan if value is None or value == "" else float(value)
