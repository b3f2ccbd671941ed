"""The tables built from per-cell JSONs and rows: regimes, recovery, Fisher, prediction.

Everything here runs on synthetic rows or JSONs written in a temporary folder (no model)."""

import json
import math

import numpy as np
import pytest
from scipy.stats import spearmanr

from reversibility.config import Cell
from reversibility.layout import curve_json, diagnostics_json
from reversibility.tables import (
    CELL_COLUMNS,
    LAYER_MEASURES,
    PREDICTION_CELL_COLUMNS,
    PREDICTION_TARGETS,
    PREDICTORS,
    TABLES,
    prediction_cell_rows,
    prediction_groups,
    prediction_rows,
    read_csv,
    regime_rows,
    representation_rows,
    reversal_rows,
    write_csv,
)

THRESHOLDS = {"forgotten_share": 0.5, "reversible_share": 0.7, "catastrophic_share": 0.5}


def write(path, data):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))


# --------------------------------------------------------------------------- regimes


def cell_rows(
    method, base, unlearned, relearned, matched, never_seen=0.2, retain_unlearned=0.6, n=1, held_out=None, seed=0
):
    """Metrics and recovery rows of one cell. `matched`: (raw relearned F.Acc, controlled recovery)
    of the matched budget, which here is not the primary one; `held_out`: (unlearned F.Acc on the
    held-out part, latent recovery) of a held-out row."""
    key = dict(zip(CELL_COLUMNS, ("tiny", "toy", method, n, "0.001", seed)))
    stages = (("base", base, 0.6), ("unlearned", unlearned, retain_unlearned), ("relearned", relearned, 0.6))
    metrics = [
        {
            **key,
            "stage": stage,
            "forget_accuracy": forget,
            "retain_accuracy": retain,
            "holdout_accuracy": never_seen if stage == "base" else 0.0,
            "collapsed": False,
        }
        for stage, forget, retain in stages
    ]
    relearned_matched, controlled = matched
    recovery = [
        {
            **key,
            "measured_on": "forgotten",
            "relearn_steps": 16,
            "primary": True,
            "matched": False,
            "forget_relearned": relearned,
            "forget_gain": relearned - unlearned,
            "controlled_recovery": 1.0,
        },
        {
            **key,
            "measured_on": "forgotten",
            "relearn_steps": 24,
            "primary": False,
            "matched": True,
            "forget_relearned": relearned_matched,
            "forget_gain": relearned_matched - unlearned,
            "controlled_recovery": controlled,
        },
    ]
    if held_out:
        # Also the matched budget (and read from a CSV: strings), measured on the held-out part.
        recovery.append(
            {
                **key,
                "measured_on": "held_out",
                "relearn_steps": "24",
                "primary": "False",
                "matched": "True",
                "forget_unlearned": str(held_out[0]),
                "forget_relearned": "0.99",
                "forget_gain": "0.99",
                "controlled_recovery": str(held_out[1]),
            }
        )
    return metrics, recovery


def test_regimes_are_judged_on_the_matched_budget_as_shares_of_the_gap():
    # Gap 0.9 - 0.2 = 0.7, all of it forgotten. The primary budget's raw F.Acc 0.3 would say
    # irreversible; the matched budget is back to 0.8 raw ((0.8 - 0.2) / 0.7 = 0.857 of the gap),
    # but beyond its control only 0.35 ((0.2 + 0.35 - 0.2) / 0.7 = 0.5).
    metrics, recovery = cell_rows("ga", base=0.9, unlearned=0.2, relearned=0.3, matched=(0.8, 0.35))
    (row,) = regime_rows(metrics, recovery, THRESHOLDS)
    assert row["forget_never_seen"] == 0.2 and row["memorisation_gap"] == pytest.approx(0.7)
    assert row["forget_relearned"] == 0.3 and row["forget_relearned_matched"] == 0.8 and row["matched_steps"] == 24
    assert row["controlled_recovery_matched"] == 0.35 and row["forget_gain_matched"] == pytest.approx(0.6)
    assert row["forgetting"] == pytest.approx(1.0)
    assert row["raw_recovery_share"] == pytest.approx(0.6 / 0.7)
    assert row["controlled_recovery_share"] == pytest.approx(0.5)
    assert row["restored_paper"] == pytest.approx(0.6 / 0.7) and row["restored_controlled"] == pytest.approx(0.5)
    assert row["reversible_paper"] is True and row["reversible_controlled"] is False
    assert row["regime_paper"] == "reversible, retain kept"
    assert row["regime_controlled"] == "irreversible, retain kept"
    assert row["damaged"] is False and row["damage"] == 0.0
    assert row["regime_held_out"] == "not measured" and row["latent_recovery"] is None


def test_held_out_recovery_judges_hidden_or_deleted_apart_from_the_matched_budget():
    # Gap 0.7; the held-out part (unlearned 0.25) gains 0.45 beyond the control:
    # (0.25 + 0.45 - 0.2) / 0.7 = 0.714 >= 0.7 of the gap came back on samples never relearned.
    metrics, recovery = cell_rows(
        "ga", base=0.9, unlearned=0.2, relearned=0.3, matched=(0.8, 0.35), held_out=(0.25, 0.45)
    )
    (row,) = regime_rows(metrics, recovery, THRESHOLDS)
    assert row["controlled_recovery_matched"] == 0.35 and row["regime_controlled"] == "irreversible, retain kept"
    assert row["forget_unlearned_held_out"] == 0.25 and row["latent_recovery"] == 0.45
    assert row["latent_recovery_share"] == pytest.approx(0.45 / 0.7)
    assert row["restored_held_out"] == pytest.approx(0.5 / 0.7)
    assert row["hidden"] is True and row["regime_held_out"] == "hidden"


@pytest.mark.parametrize(
    "cell, paper, controlled",
    [
        ({"unlearned": 0.8, "matched": (0.85, 0.05)}, "not forgotten", "not forgotten"),
        ({"unlearned": 0.2, "matched": (0.8, 0.6)}, "reversible, retain kept", "reversible, retain kept"),
        (
            {"unlearned": 0.2, "matched": (0.8, 0.6), "retain_unlearned": 0.1},
            "reversible, catastrophic",
            "reversible, catastrophic",
        ),
        ({"unlearned": 0.2, "matched": (0.3, 0.05)}, "irreversible, retain kept", "irreversible, retain kept"),
        (
            {"unlearned": 0.2, "matched": (0.3, 0.05), "retain_unlearned": 0.1},
            "irreversible, catastrophic",
            "irreversible, catastrophic",
        ),
        ({"unlearned": 0.2, "matched": (0.8, 0.6), "never_seen": 0.9}, "no memorisation gap", "no memorisation gap"),
        ({"unlearned": 0.2, "matched": (0.8, None)}, "reversible, retain kept", "undetermined"),
    ],
)
def test_every_regime_from_hand_worked_rows(cell, paper, controlled):
    metrics, recovery = cell_rows("ga", base=0.9, relearned=0.5, **cell)
    (row,) = regime_rows(metrics, recovery, THRESHOLDS)
    assert (row["regime_paper"], row["regime_controlled"]) == (paper, controlled)


class Built:
    """The tables a derived table reads, as GridResults.rows gives them."""

    def __init__(self, **tables):
        self.tables = tables

    def rows(self, name):
        return self.tables[name]


def test_regimes_over_seeds_give_agreement_and_the_interval_of_each_share():
    # Two seeds recover 0.6 beyond the control ((0.2 + 0.6 - 0.2) / 0.7 of the gap), one 0.05.
    metrics, recovery = [], []
    for seed, controlled in ((0, 0.6), (1, 0.6), (2, 0.05)):
        m, r = cell_rows("ga", base=0.9, unlearned=0.2, relearned=0.5, matched=(0.8, controlled), seed=seed)
        metrics, recovery = metrics + m, recovery + r
    regimes = regime_rows(metrics, recovery, THRESHOLDS)
    assert [row["seed"] for row in regimes] == [0, 1, 2]
    built = Built(regimes=regimes)
    labels = {row["measure"]: row["label"] for row in TABLES["regimes_agreement"].build(built)}
    assert labels["regime_controlled"] == "reversible, retain kept 2/3"
    assert labels["regime_paper"] == "reversible, retain kept 3/3"
    (share,) = [r for r in TABLES["regimes_over_seeds"].build(built) if r["measure"] == "controlled_recovery_share"]
    shares = [0.6 / 0.7, 0.6 / 0.7, 0.05 / 0.7]
    assert share["seeds"] == 3 and share["method"] == "ga" and "seed" not in share
    assert share["mean"] == pytest.approx(np.mean(shares)) and share["sd"] == pytest.approx(np.std(shares, ddof=1))
    half = 4.302652729911275 * np.std(shares, ddof=1) / np.sqrt(3)  # t(0.975, 2 dof)
    assert (share["low"], share["high"]) == pytest.approx((np.mean(shares) - half, np.mean(shares) + half))


def test_an_unlearned_accuracy_below_the_never_seen_level_is_reported_as_damage():
    metrics, recovery = cell_rows("ga", base=0.9, unlearned=0.05, relearned=0.5, matched=(0.8, 0.7))
    (row,) = regime_rows(metrics, recovery, THRESHOLDS)
    assert row["damaged"] is True and row["damage"] == pytest.approx(0.15)
    assert row["forgetting"] == pytest.approx(0.85 / 0.7)
    assert row["regime_controlled"] == "reversible, retain kept"  # (0.05 + 0.7 - 0.2) / 0.7 = 0.79


def test_a_cell_without_a_matched_budget_or_a_gap_is_undetermined():
    metrics, recovery = cell_rows("ga", base=0.9, unlearned=0.1, relearned=0.85, matched=(0.8, 0.6))
    (missing,) = regime_rows(metrics, [], THRESHOLDS)
    assert missing["forgotten"] is True
    assert (missing["regime_paper"], missing["regime_controlled"]) == ("undetermined", "undetermined")
    metrics, recovery = cell_rows("ga", base=0.2, unlearned=0.1, relearned=0.85, matched=(0.8, 0.6))
    (flat,) = regime_rows(metrics, recovery, THRESHOLDS)
    assert flat["memorisation_gap"] == 0.0 and flat["forgetting"] is None
    assert (flat["regime_paper"], flat["regime_controlled"]) == ("no memorisation gap", "no memorisation gap")


# --------------------------------------------------------------------------- recovery


def test_the_recovery_table_marks_the_matched_budget_and_the_kind_of_control(tmp_path):
    cell = Cell("tiny", "toy", "ga", 2, 1e-3)
    unlearned = {"forget": {"accuracy": 0.1}, "retain": {"accuracy": 0.5}, "unseen": {"accuracy": 0.2}}

    def budget(steps, primary, matched, forget):
        return {
            "steps": steps,
            "learning_rate": 1e-4,
            "primary": primary,
            "matched": matched,
            "relearned": {"forget": {"accuracy": forget}, "retain": {"accuracy": 0.5}},
            "control": {"unseen": {"accuracy": 0.25}},
            "forget_gain": forget - 0.1,
            "control_gain": 0.05,
            "controlled_recovery": forget - 0.15,
        }

    write(
        tmp_path / curve_json(cell, "reversal", "results"),
        {
            "collapsed": False,
            "unlearned": unlearned,
            "control": "same_run",
            "quantization": [],
            "budgets": [budget(4, False, True, 0.3), budget(16, True, False, 0.6)],
        },
    )
    rows = reversal_rows([cell], results=str(tmp_path / "results"))["recovery"]
    assert [(r["relearn_steps"], r["primary"], r["matched"]) for r in rows] == [(4, False, True), (16, True, False)]
    assert {r["control_kind"] for r in rows} == {"same_run"}


# --------------------------------------------------------------------------- representations and Fisher


def fisher_comparison(samples, js, below, layers=("model.layers.0", "model.layers.1")):
    return {
        "samples": samples,
        "bins": [1e-16, 1e-8, 1.0],
        "layers": list(layers),
        "histogram_base": [[samples, 1]] * len(layers),
        "histogram": [[1, 2]] * len(layers),
        "mass_base": [1.0] * len(layers),
        "mass": [2.0] * len(layers),
        "log10_mass_ratio": [math.log10(2)] * len(layers),
        "js_distance": list(js),
        "below_range_base": [0.1] * len(layers),
        "below_range": list(below),
    }


def diagnostics(n, cka_common, js_common):
    layers = ["model.embed_tokens", "model.layers.0"]

    def split(cka):
        return {**{m: [0.5] * len(layers) for m in LAYER_MEASURES}, "mean_cka": cka, "mean_pca_distance": 1 - cka}

    return {
        "layers": layers,
        "n_requests": n,
        "collapsed": False,
        "splits": {"forget": split(0.1 * n), "all": split(0.2), "common": split(cka_common)},
        "fisher": fisher_comparison(8 * n, js=[0.5, 0.7], below=[0.3, 0.4]),
        "fisher_common": fisher_comparison(8, js=js_common, below=[0.2, 0.25]),
    }


def test_fisher_rows_carry_both_sample_sets_with_the_share_below_range(tmp_path):
    cells = [Cell("tiny", "toy", "ga", n, 1e-3) for n in (1, 4)]
    for cell in cells:
        for stage in ("unlearned", "relearned"):
            write(tmp_path / diagnostics_json(cell, stage, "results"), diagnostics(cell.n_requests, 0.9, [0.1, 0.3]))
    tables = representation_rows(cells, results=str(tmp_path / "results"))
    fisher = [r for r in tables["fisher"] if r["n_requests"] == 4 and r["stage"] == "unlearned"]
    assert [(r["sample_set"], r["samples"], r["layer"], r["js_distance"], r["below_range"]) for r in fisher] == [
        ("forget", 32, "model.layers.0", 0.5, 0.3),
        ("forget", 32, "model.layers.1", 0.7, 0.4),
        ("common", 8, "model.layers.0", 0.1, 0.2),
        ("common", 8, "model.layers.1", 0.3, 0.25),
    ]
    assert all(r["below_range_base"] == 0.1 for r in fisher)
    assert {r["split"] for r in tables["summary"]} == {"forget", "all", "common"}
    # The base model's Fisher on the cell's forgotten samples changes with N: one base histogram per N.
    base = [r for r in tables["histograms"] if r["stage"] == "base" and r["layer"] == "model.layers.0"]
    assert sorted((r["n_requests"], r["count"]) for r in base if r["bin_low"] == 1e-16) == [(1, 8), (4, 32)]


# --------------------------------------------------------------------------- prediction


def regime_row(model, dataset, method, forgetting, recovery_share, forgotten=True):
    return {
        **dict(zip(CELL_COLUMNS, (model, dataset, method, 1, "0.001", 0))),
        "forgetting": forgetting,
        "controlled_recovery_share": recovery_share,
        "latent_recovery_share": recovery_share / 2,
        "forgotten": forgotten,
        "regime_paper": "reversible, retain kept",
        "regime_controlled": "irreversible, retain kept",
        "regime_held_out": "deleted",
        "collapsed": False,
    }


def test_prediction_cells_take_every_diagnostic_from_the_common_samples():
    regimes = [regime_row("tiny", "toy", "ga", 0.9, 0.4)]
    key = dict(zip(CELL_COLUMNS, ("tiny", "toy", "ga", 1, "0.001", 0)))
    splits = (("all", 0.1), ("forget", 0.2), ("common", 0.3))
    summary = [
        {**key, "stage": "unlearned", "split": split, "mean_cka": cka, "mean_pca_distance": 10 * cka}
        for split, cka in splits
    ] + [{**key, "stage": "relearned", "split": "common", "mean_cka": 0.9, "mean_pca_distance": 0.0}]
    fisher = [
        {**key, "stage": "unlearned", "sample_set": sample_set, "layer": layer, "js_distance": js}
        for sample_set, values in (("forget", (0.9, 0.9)), ("common", (0.2, 0.4)))
        for layer, js in zip(("model.layers.0", "model.layers.1"), values)
    ]
    (row,) = prediction_cell_rows(regimes, summary, fisher)
    assert row["mean_cka"] == 0.3 and row["mean_pca_distance"] == 3.0
    assert row["fisher_js"] == pytest.approx(0.3)
    assert row["forgetting"] == 0.9 and row["controlled_recovery_share"] == 0.4 and row["forgotten"] is True
    assert row["latent_recovery_share"] == 0.2 and row["regime_held_out"] == "deleted"
    assert set(row) == set(PREDICTION_CELL_COLUMNS)


def test_prediction_cells_read_the_lens_and_the_probe_of_the_unlearned_model_on_its_forget_set():
    regimes = [regime_row("tiny", "toy", "ga", 0.9, 0.4), regime_row("tiny", "toy", "npo", 0.9, 0.4)]
    ga = dict(zip(CELL_COLUMNS, ("tiny", "toy", "ga", 1, "0.001", 0)))
    # Forget accuracy per layer (the last is the output): the unlearned model reads 0.5 at layer 1
    # where its output gives 0.1; the holdout and the other stages are not read.
    lens = [
        {**ga, "stage": stage, "split": split, "layer_index": k, "accuracy": value}
        for stage, split, values in (
            ("unlearned", "forget", (0.2, 0.5, 0.3, 0.1)),
            ("unlearned", "holdout", (0.9, 0.9, 0.9, 0.0)),
            ("relearned", "forget", (0.0, 0.9, 0.9, 0.0)),
        )
        for k, value in enumerate(values)
    ]
    probe = [
        {**ga, "stage": stage, "layer_index": k, "probe_auc": value}
        for stage, values in (("unlearned", (0.5, 0.7, None, 0.9)), ("relearned", (1.0, 1.0, 1.0, 1.0)))
        for k, value in enumerate(values)
    ]
    by_method = {row["method"]: row for row in prediction_cell_rows(regimes, [], [], lens, probe)}
    assert by_method["ga"]["lens_excess"] == pytest.approx(0.4)
    assert by_method["ga"]["probe_auc"] == pytest.approx(0.7)
    assert by_method["npo"]["lens_excess"] is None and by_method["npo"]["probe_auc"] is None


def test_models_are_never_pooled_and_a_model_pools_its_datasets():
    cells = [
        regime_row(model, dataset, "ga", 0.9, 0.5)
        for model, dataset in (("yi", "arxiv"), ("yi", "github"), ("qwen", "numina"))
    ]
    groups = prediction_groups(cells)
    assert set(groups) == {("yi", "arxiv"), ("yi", "github"), ("qwen", "numina"), ("yi", "all")}
    assert [c["dataset"] for c in groups["yi", "all"]] == ["arxiv", "github"]
    assert all(c["model"] == "yi" for c in groups["yi", "all"])


def test_prediction_correlates_over_the_cells_that_forgot_and_over_all_of_them():
    """Among the cells that forgot, recovery rises with every predictor (rho 1); the cells that
    did not forget (their recovery is noise on a gap they never lost) break the relation once
    they are pooled in."""
    cells = []
    for k in range(6):
        row = regime_row("tiny", "toy", f"m{k}", 0.5 + 0.1 * k, 0.1 * k)
        cells.append(
            {
                **row,
                "mean_cka": 0.1 * k,
                "mean_pca_distance": k**2,
                "fisher_js": 1 + k,
                "lens_excess": 0.01 * k,
                "probe_auc": 0.5 + 0.01 * k,
            }
        )
    for k in range(4):
        row = regime_row("tiny", "toy", f"idle{k}", 0.1 - 0.01 * k, 0.45 - 0.1 * k, forgotten=False)
        cells.append(
            {
                **row,
                "mean_cka": 0.9 + 0.01 * k,
                "mean_pca_distance": 30 + k,
                "fisher_js": 9 + k,
                "lens_excess": 0.5 + k,
                "probe_auc": 0.9 + 0.01 * k,
            }
        )
    all_rows = prediction_rows(cells, seed=3)
    assert {(r["target"], r["cell_set"], r["diagnostic"]) for r in all_rows} == {
        (t, s, p) for t in PREDICTION_TARGETS for s in ("forgotten", "all") for p in PREDICTORS
    }
    # The latent recovery is half the controlled one in every cell: the same ranks, the same rho.
    latent = {(r["cell_set"], r["diagnostic"]): r for r in all_rows if r["target"] == "latent_recovery_share"}
    rows = {(r["cell_set"], r["diagnostic"]): r for r in all_rows if r["target"] == "controlled_recovery_share"}
    assert all(latent[key]["spearman"] == pytest.approx(rows[key]["spearman"]) for key in rows)
    assert all(r["model"] == "tiny" and r["dataset"] == "toy" for r in rows.values())
    for predictor in PREDICTORS:
        forgotten = rows["forgotten", predictor]
        assert forgotten["spearman"] == pytest.approx(1.0) and forgotten["cells"] == 6
        assert rows["all", predictor]["cells"] == 10
        expected = spearmanr([c[predictor] for c in cells], [c["controlled_recovery_share"] for c in cells]).statistic
        assert rows["all", predictor]["spearman"] == pytest.approx(expected) and expected < 0.9


def test_prediction_reads_its_cells_back_from_the_csv(tmp_path):
    """The forgotten flag and empty values survive a round trip through prediction_cells.csv."""
    cells = [
        {
            **regime_row("tiny", "toy", f"m{k}", 0.6, 0.1 * k, forgotten=k < 4),
            "mean_cka": 0.1 * k,
            "mean_pca_distance": None,
            "fisher_js": 0.2 * k,
            "lens_excess": None,
            "probe_auc": 0.3 * k,
        }
        for k in range(6)
    ]
    write_csv(tmp_path / "cells.csv", PREDICTION_CELL_COLUMNS, cells)
    rows = {
        (r["cell_set"], r["diagnostic"]): r
        for r in prediction_rows(read_csv(tmp_path / "cells.csv"))
        if r["target"] == "controlled_recovery_share"
    }
    assert rows["forgotten", "mean_cka"]["cells"] == 4 and rows["all", "mean_cka"]["cells"] == 6
    assert rows["forgotten", "mean_cka"]["spearman"] == pytest.approx(1.0)
    assert rows["all", "mean_pca_distance"]["cells"] == 0 and math.isnan(rows["all", "mean_pca_distance"]["spearman"])


# --------------------------------------------------------------------------- registry


def test_a_registered_table_flows_to_the_tables_rule_outputs(tmp_path, monkeypatch, micro_config):
    from conftest import plan

    from reversibility import tables

    toy = tables.Table(["model", "cells"], lambda grid: [], caption=False, renderings={"md": lambda rows: ""})
    monkeypatch.setitem(tables.TABLES, "toy", toy)
    planned = plan(tmp_path, micro_config)
    assert {"results/tables/toy.csv", "results/tables/toy.md", "results/tables/metrics.csv"} <= set(planned)


def test_tables_are_built_once_from_each_other_and_written_with_their_renderings(tmp_path, monkeypatch):
    from reversibility import tables

    built = []

    def counted(name, rows):
        def build(grid):
            built.append(name)
            return rows(grid)

        return build

    registry = {
        "cells": tables.Table(["cell"], counted("cells", lambda grid: [{"cell": c} for c in grid.grid])),
        "count": tables.Table(
            ["cells"],
            counted("count", lambda grid: [{"cells": len(grid.rows("cells"))}]),
            renderings={"txt": lambda rows: f"{rows[0]['cells']} cells\n"},
        ),
        "twice": tables.Table(["cell"], counted("twice", lambda grid: grid.rows("cells") * 2)),
    }
    monkeypatch.setattr(tables, "TABLES", registry)
    outputs = {key: tmp_path / file for name in registry for key, file in tables.table_files(name).items()}
    tables.write_tables(tables.GridResults(["a", "b", "c"]), outputs)
    assert sorted(built) == ["cells", "count", "twice"]
    assert read_csv(outputs["count"]) == [{"cells": "3"}] and outputs["count_txt"].read_text() == "3 cells\n"
    assert [row["cell"] for row in read_csv(outputs["twice"])] == ["a", "b", "c"] * 2


def test_a_row_with_other_columns_than_its_table_is_refused_before_anything_is_written(tmp_path):
    path = tmp_path / "table.csv"
    path.write_text("kept\n")
    with pytest.raises(ValueError, match=r"table.csv: row 1 .* missing \['b'\], unexpected \['c'\]"):
        write_csv(path, ["a", "b"], [{"a": 1, "b": 2}, {"a": 1, "c": 3}])
    assert path.read_text() == "kept\n"


def test_every_table_in_the_report_has_its_caption_and_every_caption_its_table():
    from pathlib import Path

    from reversibility.tables import TABLES

    captions = Path(__file__).resolve().parents[1] / "workflow" / "report" / "tables"
    from reversibility.tables import caption_of

    assert {p.stem for p in captions.glob("*.rst")} == {caption_of(name) for name in TABLES} - {None}


# --------------------------------------------------------------------------- membership probe


def test_membership_probe_rows_carry_every_layer_and_stage_beside_the_output_mia(tmp_path):
    from reversibility.tables import PROBE_COLUMNS, membership_probe_rows

    cells = [Cell("tiny", "toy", method, n, 1e-3) for method in ("ga", "npo") for n in (1, 4)]
    layers = ["model.embed_tokens", "model.layers.0"]

    def probe(auc):
        return {"pooling": "mean", "auc": auc, "samples_per_class": 8, "folds": 5, "converged": [True, False]}

    metrics = []
    for cell in cells:
        for stage, auc in (("unlearned", [0.6, 0.7]), ("relearned", [0.8, 0.9])):
            result = {
                **diagnostics(cell.n_requests, 0.9, [0.1, 0.3]),
                "layers": layers,
                "membership_probe": {"stage": probe(auc), "base": probe([0.95, 0.1 * cell.n_requests])},
            }
            write(tmp_path / diagnostics_json(cell, stage, "results"), result)
        for stage, mia in (("base", {1: 0.91, 4: 0.94}[cell.n_requests]), ("unlearned", 0.4), ("relearned", 0.7)):
            key = dict(zip(CELL_COLUMNS, (cell.model, cell.dataset, cell.method, cell.n_requests, "0.001", 0)))
            metrics.append({**key, "stage": stage, "mia_loss_auc": mia if cell.method == "ga" else mia - 0.1})
    rows = membership_probe_rows(cells, metrics, results=str(tmp_path / "results"))
    assert all(set(row) == set(PROBE_COLUMNS) for row in rows)
    # 4 cells x 2 stages x 2 layers, and the base once per N.
    assert len(rows) == 4 * 2 * 2 + 2 * 2
    npo = {(r["stage"], r["layer"]): r for r in rows if r["method"] == "npo" and r["n_requests"] == 4}
    assert npo["unlearned", "model.layers.0"]["probe_auc"] == 0.7
    assert npo["relearned", "model.embed_tokens"]["probe_auc"] == 0.8
    assert npo["unlearned", "model.layers.0"]["output_mia_loss_auc"] == pytest.approx(0.3)
    assert npo["relearned", "model.layers.0"]["output_mia_loss_auc"] == pytest.approx(0.6)
    assert npo["relearned", "model.layers.0"]["converged"] is False
    assert [r["layer_index"] for r in rows if r["method"] == "npo" and r["n_requests"] == 4] == [0, 1, 0, 1]
    base = [r for r in rows if r["stage"] == "base"]
    assert {(r["method"], r["learning_rate"]) for r in base} == {("", "")}
    assert sorted((r["n_requests"], r["layer"], r["probe_auc"], r["output_mia_loss_auc"]) for r in base) == [
        (1, "model.embed_tokens", 0.95, 0.91),
        (1, "model.layers.0", 0.1, 0.91),
        (4, "model.embed_tokens", 0.95, 0.94),
        (4, "model.layers.0", 0.4, 0.94),
    ]


def test_membership_probe_rows_are_empty_without_a_probe(tmp_path):
    from reversibility.tables import membership_probe_rows

    cell = Cell("tiny", "toy", "ga", 1, 1e-3)
    for stage in ("unlearned", "relearned"):
        write(tmp_path / diagnostics_json(cell, stage, "results"), {**diagnostics(1, 0.9, [0.1, 0.3])})
    assert membership_probe_rows([cell], [], results=str(tmp_path / "results")) == []


def test_the_latex_table_gives_one_seed_as_is_and_several_as_mean_and_sd():
    from reversibility.tables import SINGLE_COLUMNS, latex_table

    def single(seed, forget):
        values = {"mia_loss_auc": 0.9, "forget_accuracy": forget, "retain_accuracy": 0.6}
        return [
            {**dict(zip(SINGLE_COLUMNS, ("tiny", "toy", "ga", "0.001", seed, stage))), **values}
            for stage in ("base", "unlearned", "relearned")
        ]

    (line,) = [line for line in latex_table(single(0, 0.4)).splitlines() if line.startswith("tiny")]
    assert line == "tiny & toy & ga & 0.001" + " & 0.900 & 0.400 & 0.600" * 3 + " \\\\"
    (line,) = [line for line in latex_table(single(0, 0.4) + single(1, 0.6)).splitlines() if line.startswith("tiny")]
    # F.Acc 0.4 and 0.6: mean 0.5, sd sqrt(0.02) = 0.141; the same MIA on both seeds: sd 0.
    assert " & 0.900 $\\pm$ 0.000 & 0.500 $\\pm$ 0.141 & 0.600 $\\pm$ 0.000" in line
