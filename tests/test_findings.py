"""The paper's claims read off synthetic tables whose verdict is known."""

from reversibility.findings import (
    DOES_NOT_HOLD,
    HOLDS,
    NOT_TESTABLE,
    PARTLY,
    continual_unlearning_collapses,
    finding_rows,
    forgotten_samples_return_unseen,
    ga_and_rlabel_over_forget,
    irreversible_forgetting_moves_the_representations,
    relearning_can_exceed_the_base,
    single_unlearning_is_mostly_reversible,
)


def cell(
    method="npo",
    n=8,
    lr="0.0001",
    dataset="code",
    *,
    forgetting=0.8,
    forgotten=True,
    reversible=True,
    controlled=None,
    catastrophic=False,
    retain=0.6,
    forget_base=0.4,
    relearned=0.35,
    held_out="deleted",
    latent=0.1,
):
    return {
        "model": "tiny",
        "dataset": dataset,
        "method": method,
        "n_requests": n,
        "learning_rate": lr,
        "forgetting": forgetting,
        "forgotten": forgotten,
        "reversible_paper": reversible if forgotten else False,
        "reversible_controlled": reversible if controlled is None else controlled,
        "catastrophic": catastrophic,
        "retain_base": 0.6,
        "retain_unlearned": retain,
        "forget_base": forget_base,
        "forget_relearned": relearned,
        "regime_held_out": held_out,
        "latent_recovery_share": latent,
    }


def test_single_unlearning_needs_n1_cells_that_forgot():
    verdict, evidence, _ = single_unlearning_is_mostly_reversible(
        [cell(n=1, forgetting=0.1, forgotten=False), cell(n=8)], {}
    )
    assert verdict == NOT_TESTABLE and "0.10 to 0.10" in evidence
    cells = [cell(n=1), cell(n=1, method="ga"), cell(n=1, method="rlabel", reversible=False)]
    verdict, evidence, _ = single_unlearning_is_mostly_reversible(cells, {})
    assert verdict == HOLDS and evidence.startswith("2 of 3")
    assert evidence.endswith("0 are back at or above the base F.Acc")
    verdict, _, _ = single_unlearning_is_mostly_reversible(cells[1:], {})
    assert verdict == PARTLY  # 1 of 2 is not "mostly"
    verdict, _, _ = single_unlearning_is_mostly_reversible([cell(n=1, reversible=False)], {})
    assert verdict == DOES_NOT_HOLD


def test_continual_unlearning_compares_each_method_at_the_smallest_and_largest_n():
    few = [cell(n=1, method=m, retain=0.6) for m in ("ga", "npo")]
    collapse = [cell(n=8, method=m, catastrophic=True, retain=0.2) for m in ("ga", "npo")]
    verdict, evidence, _ = continual_unlearning_collapses(few + collapse, {})
    assert verdict == HOLDS and "0 of 2 cells at N = 1, 2 at N = 8" in evidence and "1.00 -> 0.33" in evidence
    erosion = [cell(n=8, method=m, retain=0.5) for m in ("ga", "npo")]
    assert continual_unlearning_collapses(few + erosion, {})[0] == PARTLY
    assert continual_unlearning_collapses(few + [cell(n=8, method=m) for m in ("ga", "npo")], {})[0] == DOES_NOT_HOLD
    assert continual_unlearning_collapses(few, {})[0] == NOT_TESTABLE


def test_over_forgetting_is_judged_where_both_groups_ran():
    point = [
        cell(method="ga", forgetting=1.3, retain=0.2),
        cell(method="rlabel", forgetting=1.1, retain=0.3),
        cell(method="npo", forgetting=0.9, retain=0.55),
        cell(method="ga_kl", forgetting=0.7, retain=0.6),
    ]
    verdict, evidence, _ = ga_and_rlabel_over_forget(point, {})
    assert verdict == HOLDS and "mean forgetting 1.20 against 0.80" in evidence
    swapped = [{**c, "forgetting": 2.0 - c["forgetting"]} for c in point]
    assert ga_and_rlabel_over_forget(swapped, {})[0] == PARTLY  # still less R.Acc kept
    # Another dataset without a stable method is no comparison.
    assert ga_and_rlabel_over_forget([cell(method="ga", dataset="prose")], {})[0] == NOT_TESTABLE


def test_the_representation_signature_compares_irreversible_with_reversible_cells():
    cells = [cell(method="ga", reversible=False), cell(method="npo", reversible=True)]
    signature = {
        ("tiny", "code", "ga", "8", "0.0001"): {
            "pc1_cosine": 0.4,
            "mean_pca_distance": 5.0,
            "mean_cka": 0.6,
            "fisher_js": 0.5,
        },
        ("tiny", "code", "npo", "8", "0.0001"): {
            "pc1_cosine": 0.9,
            "mean_pca_distance": 1.0,
            "mean_cka": 0.9,
            "fisher_js": 0.2,
        },
    }
    verdict, evidence, _ = irreversible_forgetting_moves_the_representations(cells, signature)
    assert verdict == HOLDS and evidence.startswith("4 of 4") and "CKA drop: 0.60 irreversible against 0.90" in evidence
    signature[("tiny", "code", "ga", "8", "0.0001")]["mean_cka"] = 0.95
    assert irreversible_forgetting_moves_the_representations(cells, signature)[0] == PARTLY
    assert irreversible_forgetting_moves_the_representations(cells[:1], signature)[0] == NOT_TESTABLE


def test_relearning_beyond_the_base():
    assert relearning_can_exceed_the_base([cell(relearned=0.42), cell(relearned=0.3)], {})[:2] == (
        HOLDS,
        "1 of 2 cells that forgot end relearning above the base F.Acc (largest margin +0.020)",
    )
    assert relearning_can_exceed_the_base([cell(relearned=0.3)], {})[0] == DOES_NOT_HOLD
    assert relearning_can_exceed_the_base([cell(forgotten=False)], {})[0] == NOT_TESTABLE


def test_forgotten_samples_coming_back_unseen_is_judged_on_the_held_out_regime():
    cells = [cell(held_out="hidden", latent=0.9), cell(latent=0.2), cell(held_out="hidden", latent=0.8)]
    assert forgotten_samples_return_unseen(cells, {})[:2] == (
        HOLDS,
        "2 of 3 cells that forgot get their held-out forgotten samples back (hidden, not deleted); "
        "latent recovery 0.20 to 0.90 of the gap, mean 0.63",
    )
    assert forgotten_samples_return_unseen(cells[1:], {})[0] == PARTLY
    assert forgotten_samples_return_unseen(cells[1:2], {})[0] == DOES_NOT_HOLD
    unmeasured = [cell(held_out="not measured"), cell(forgotten=False, held_out="not forgotten")]
    assert forgotten_samples_return_unseen(unmeasured, {})[0] == NOT_TESTABLE


def test_rows_read_back_from_csv_give_the_same_findings(tmp_path):
    """The tables job passes rows in memory; a reader of the CSVs gets strings: the same verdicts."""
    from reversibility.tables import read_csv, write_csv

    regimes = [
        cell(n=1),
        cell(n=1, method="ga", reversible=False),
        cell(method="ga", catastrophic=True, retain=0.1),
        cell(relearned=0.45),
    ]
    summary = [
        {
            "model": "tiny",
            "dataset": "code",
            "method": c["method"],
            "n_requests": c["n_requests"],
            "learning_rate": "0.0001",
            "stage": "unlearned",
            "split": "common",
            "mean_cka": 0.8,
            "mean_pca_distance": 1.0,
        }
        for c in regimes
    ]
    columns = list(regimes[0])
    write_csv(tmp_path / "regimes.csv", columns, regimes)
    write_csv(tmp_path / "summary.csv", list(summary[0]), summary)
    in_memory = finding_rows(regimes, summary, [], [])
    from_files = finding_rows(read_csv(tmp_path / "regimes.csv"), read_csv(tmp_path / "summary.csv"), [], [])
    assert [r["verdict"] for r in in_memory] == [r["verdict"] for r in from_files]
    assert [r["claim"] for r in in_memory][0] == "single unlearning is mostly reversible"
    assert {r["model"] for r in in_memory} == {"tiny"}


def test_each_seed_is_judged_on_its_own_cells_and_the_agreement_counts_the_seeds():
    from reversibility.tables import TABLES, findings_per_seed

    def seeded(seed, **kwargs):
        return {**cell(n=1, **kwargs), "seed": seed}

    # Seeds 0 and 2: both N = 1 cells reversible; seed 1: neither. Pooled, 4 of 6 would say "holds".
    regimes = [seeded(s, method=m, reversible=s != 1) for s in (0, 1, 2) for m in ("ga", "npo")]
    rows = findings_per_seed(regimes, [], [], [])
    claim = "single unlearning is mostly reversible"
    verdicts = {r["seed"]: r["verdict"] for r in rows if r["claim"] == claim}
    assert verdicts == {0: HOLDS, 1: DOES_NOT_HOLD, 2: HOLDS}

    class Built:
        def rows(self, name):
            return {"findings": rows}[name]

    (agreed,) = [r for r in TABLES["findings_agreement"].build(Built()) if r["claim"] == claim]
    assert agreed["label"] == f"{HOLDS} 2/3" and agreed["model"] == "tiny"
