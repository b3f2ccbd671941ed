"""Tidy tables over the whole grid: one row per (model, dataset, method, N, lr, stage[, layer]).

Figures and users read these CSVs; the per-cell JSONs stay the source of truth. Every table is
declared once, in `TABLES` at the end of this module (its name, columns, row builder, whether the
report shows it, other renderings); the tables rule's outputs, its script and the report derive
from that registry.
"""

from __future__ import annotations

import csv
import functools
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from statistics import fmean
from typing import Any, Callable, Iterable, Mapping, Sequence

from .cell_data import SAME_RUN
from .config import CELL_STAGES, STAGES, Cell, lr_label
from .findings import FINDING_COLUMNS, finding_rows
from .io import atomic_path, read_json, rerun_hint
from .layout import RESULTS, curve_json, diagnostics_json, metrics_json
from .metrics import ATTACKS, held_out_regime, privacy_leak, regime
from .prediction import correlate
from .replicates import AGREEMENT_COLUMNS, OVER_SEEDS_COLUMNS, agreement, over_seeds, seeds_of, summarise

KEY_COLUMNS = ["model", "dataset", "method", "n_requests", "learning_rate", "seed", "stage"]
# A row's key without its seed: what the seeds of a grid point share.
POINT_COLUMNS = [c for c in KEY_COLUMNS if c != "seed"]
SPLIT_MEASURES = ("accuracy", "sequence_accuracy", "loss", "perplexity", "n_tokens")
SPLIT_COLUMNS = [f"{split}_{measure}" for split in ("forget", "retain", "holdout") for measure in SPLIT_MEASURES]
ATTACK_NAMES = tuple(ATTACKS)
METRICS_COLUMNS = (
    KEY_COLUMNS
    + SPLIT_COLUMNS
    + [f"mia_{a}_auc" for a in ATTACK_NAMES]
    + [f"privacy_leak_{a}" for a in ATTACK_NAMES]
    + ["collapsed"]
)
BENCHMARK_COLUMNS = KEY_COLUMNS + ["benchmark", "answer_style", "problems", "accuracy", "collapsed"]
LAYER_MEASURES = [
    "cka",
    "cka_unbiased",
    "pc1_cosine",
    "subspace",
    "shift_pc1",
    "pc2",
    "spread_pc1",
    "spread_pc2",
    "normalised_pc1",
    "normalised_pc2",
    "distance",
]
REPRESENTATION_COLUMNS = KEY_COLUMNS + ["split", "layer_index", "layer"] + LAYER_MEASURES
SUMMARY_COLUMNS = KEY_COLUMNS + ["split", "mean_cka", "mean_pca_distance"]
# The Fisher is compared on two sample sets: `forget`, the cell's forgotten samples, and `common`,
# the first request's samples, which every cell of a (model, dataset) shares whatever its N.
FISHER_SAMPLE_SETS = {"forget": "fisher", "common": "fisher_common"}
FISHER_MEASURES = ["mass_base", "mass", "log10_mass_ratio", "js_distance", "below_range_base", "below_range"]
FISHER_COLUMNS = KEY_COLUMNS + ["sample_set", "samples", "layer"] + FISHER_MEASURES
HISTOGRAM_COLUMNS = KEY_COLUMNS + ["layer", "bin_low", "bin_high", "count"]
# The membership probe per layer (membership_probe.py) beside the output-level LOSS attack's AUC
# of the same stage, both telling the cell's forget samples from holdout samples.
PROBE_COLUMNS = KEY_COLUMNS + [
    "layer_index",
    "layer",
    "pooling",
    "samples_per_class",
    "folds",
    "probe_auc",
    "converged",
    "output_mia_loss_auc",
]
LOGIT_LENS_COLUMNS = KEY_COLUMNS + ["split", "layer_index", "layer", "accuracy", "mean_logprob", "targets"]
CELL_COLUMNS = [c for c in KEY_COLUMNS if c != "stage"]
GRID_POINT_COLUMNS = [c for c in CELL_COLUMNS if c != "seed"]
REGIME_COLUMNS = CELL_COLUMNS + [
    "forget_base",
    "forget_never_seen",
    "memorisation_gap",
    "forget_unlearned",
    "forget_relearned",
    "retain_base",
    "retain_unlearned",
    "retain_relearned",
    "matched_steps",
    "forget_relearned_matched",
    "forget_gain_matched",
    "controlled_recovery_matched",
    "forgetting",
    "damage",
    "damaged",
    "raw_recovery_share",
    "controlled_recovery_share",
    "restored_paper",
    "restored_controlled",
    "forgotten",
    "catastrophic",
    "reversible_paper",
    "reversible_controlled",
    "regime_paper",
    "regime_controlled",
    "forget_unlearned_held_out",
    "latent_recovery",
    "latent_recovery_share",
    "restored_held_out",
    "hidden",
    "regime_held_out",
    "collapsed",
]
REQUEST_COLUMNS = CELL_COLUMNS + [
    "request",
    "forget_seen_accuracy",
    "forget_request_accuracy",
    "retain_accuracy",
    "collapsed",
]
RELEARNING_COLUMNS = CELL_COLUMNS + ["step", "forget_accuracy", "retain_accuracy", "collapsed"]
# What a recovery row is measured on: the forgotten samples relearned, or those held out of it.
FORGOTTEN, HELD_OUT = "forgotten", "held_out"
RECOVERY_COLUMNS = CELL_COLUMNS + [
    "measured_on",
    "relearn_steps",
    "relearn_learning_rate",
    "primary",
    "matched",
    "control_kind",
    "forget_unlearned",
    "forget_relearned",
    "forget_gain",
    "control_unlearned",
    "control_relearned",
    "control_gain",
    "controlled_recovery",
    "retain_relearned",
    "collapsed",
]
QUANTIZATION_COLUMNS = CELL_COLUMNS + [
    "bits",
    "forget_unlearned",
    "forget_quantized",
    "forget_gain",
    "retain_unlearned",
    "retain_quantized",
    "controlled_recovery",
    "collapsed",
]
# The diagnostics of the unlearned model against the base tested as predictors of the
# controlled recovery: three of the representations, measured on the samples every cell of a
# (model, dataset) shares (so that N does not change what they are measured on), and one of the
# tokens.
PREDICTORS = {
    "mean_cka": "mean linear CKA over layers",
    "mean_pca_distance": "mean PCA distance over layers",
    "fisher_js": "mean Fisher JS distance over layers",
    "forgetting": "forgetting (share of the memorisation gap)",
    "lens_excess": "logit lens: best layer's F.Acc above the output's",
    "probe_auc": "mean membership-probe AUC over layers",
}
# What they should predict, shares of the cell's memorisation gap: the controlled recovery of the
# matched budget, and the latent recovery of forgotten samples that relearning never saw.
PREDICTION_TARGETS = {
    "controlled_recovery_share": "controlled recovery (share of the gap)",
    "latent_recovery_share": "held-out latent recovery (share of the gap)",
}
PREDICTION_CELL_COLUMNS = (
    CELL_COLUMNS
    + list(PREDICTORS)
    + list(PREDICTION_TARGETS)
    + ["forgotten", "regime_paper", "regime_controlled", "regime_held_out", "collapsed"]
)
# The cells a correlation runs over: those that forgot (the result: only they have something to
# recover) and all of them.
CELL_SETS = ("forgotten", "all")
PREDICTION_COLUMNS = [
    "model",
    "dataset",
    "target",
    "cell_set",
    "diagnostic",
    "spearman",
    "low",
    "high",
    "cells",
    "grid_points",
]
# The categories of a cell whose agreement over seeds the regimes_agreement table gives.
REGIME_CATEGORIES = [
    "regime_paper",
    "regime_controlled",
    "regime_held_out",
    "forgotten",
    "catastrophic",
    "reversible_paper",
    "reversible_controlled",
    "hidden",
    "collapsed",
]


def cell_key(cell: Cell, stage: str) -> dict:
    return {
        "model": cell.model,
        "dataset": cell.dataset,
        "method": cell.method,
        "n_requests": cell.n_requests,
        "learning_rate": lr_label(cell.learning_rate),
        "seed": cell.seed,
        "stage": stage,
    }


METRICS_SCHEMA = Path(__file__).resolve().parents[1] / "workflow" / "schemas" / "metrics.schema.yaml"


@functools.cache
def _metrics_validator():
    import jsonschema
    import yaml

    return jsonschema.Draft202012Validator(yaml.safe_load(METRICS_SCHEMA.read_text()))


def read_metrics(path: str | os.PathLike) -> dict:
    """A stage's metrics JSON, refused (naming the file and the first problem) unless it follows
    workflow/schemas/metrics.schema.yaml."""
    result = read_json(path)
    error = next(iter(_metrics_validator().iter_errors(result)), None)
    if error is not None:
        where = "/".join(map(str, error.absolute_path)) or "the top level"
        raise ValueError(f"{path}: malformed metrics at {where}: {error.message}; {rerun_hint(path)}")
    return result


def metrics_rows(cells: Iterable[Cell], stages: Sequence[str] = STAGES, results: str = RESULTS) -> list[dict]:
    """One row per cell and stage; the privacy leak compares each attack's AUC with the base's."""
    rows = []
    for cell in cells:
        base = read_metrics(metrics_json(cell, "base", results))
        for stage in stages:
            result = read_metrics(metrics_json(cell, stage, results))
            row = cell_key(cell, stage)
            for split in ("forget", "retain", "holdout"):
                for measure in SPLIT_MEASURES:
                    row[f"{split}_{measure}"] = result[split][measure]
            for attack in ATTACK_NAMES:
                row[f"mia_{attack}_auc"] = result["mia"][attack]
                row[f"privacy_leak_{attack}"] = privacy_leak(
                    _number(result["mia"][attack]), _number(base["mia"][attack])
                )
            row["collapsed"] = result["collapsed"]
            rows.append(row)
    return rows


def benchmark_rows(cells: Iterable[Cell], stages: Sequence[str] = STAGES, results: str = RESULTS) -> list[dict]:
    """One row per cell, stage and benchmark: the accuracy of greedy answers."""
    rows = []
    for cell in cells:
        for stage in stages:
            result = read_metrics(metrics_json(cell, stage, results))
            for name, scored in (result["benchmarks"] or {}).items():
                rows.append(
                    {
                        **cell_key(cell, stage),
                        "benchmark": name,
                        "answer_style": scored["answer_style"],
                        "problems": scored["problems"],
                        "accuracy": scored["accuracy"],
                        "collapsed": result["collapsed"],
                    }
                )
    return rows


def regime_rows(metrics: list[dict], recovery: list[dict], thresholds: Mapping[str, float]) -> list[dict]:
    """One row per cell: its forget and retain accuracies by stage, the relearning budget matched
    to its forget set, and its regime in the paper's view and in the controlled view
    (`metrics.regime`: forgetting and recovery as shares of the memorisation gap), and hidden or
    deleted as the held-out recovery judges it (`metrics.held_out_regime`).

    The raw relearned F.Acc of the primary budget (the relearned stage) is kept beside them.
    """
    by_cell: dict[tuple, dict[str, dict]] = {}
    for row in metrics:
        by_cell.setdefault(_cell_of(row), {})[row["stage"]] = row
    matched = {_cell_of(row): row for row in recovery if _flag(row["matched"]) and row["measured_on"] == FORGOTTEN}
    held_out = {_cell_of(row): row for row in recovery if row["measured_on"] == HELD_OUT}
    rows = []
    for key, stages in by_cell.items():
        accuracies = {
            f"{split}_{stage}": _number(stages[stage][f"{split}_accuracy"])
            for stage in STAGES
            for split in ("forget", "retain")
        }
        budget = matched.get(key, {})
        measured = {
            "forget_relearned_matched": budget.get("forget_relearned"),
            "forget_gain_matched": budget.get("forget_gain"),
            "controlled_recovery_matched": budget.get("controlled_recovery"),
        }
        outcome = {
            **accuracies,
            "never_seen": _number(stages["base"]["holdout_accuracy"]),
            **{name: _number(value) for name, value in measured.items()},
        }
        held = held_out.get(key, {})
        outcome["forget_unlearned_held_out"] = _optional(held.get("forget_unlearned"))
        outcome["latent_recovery"] = _optional(held.get("controlled_recovery"))
        rows.append(
            {
                **dict(zip(CELL_COLUMNS, key)),
                **accuracies,
                "forget_never_seen": outcome["never_seen"],
                "matched_steps": budget.get("relearn_steps"),
                **measured,
                **regime(outcome, thresholds),
                "forget_unlearned_held_out": outcome["forget_unlearned_held_out"],
                **held_out_regime(outcome, thresholds),
                "collapsed": stages["unlearned"]["collapsed"],
            }
        )
    return rows


def _flag(value) -> bool:
    """A boolean of a row in memory or read back from a CSV."""
    return value is True or value == "True"


def _cell_of(row: Mapping) -> tuple:
    return tuple(row[c] for c in CELL_COLUMNS)


SINGLE_COLUMNS = [
    "model",
    "dataset",
    "method",
    "learning_rate",
    "seed",
    "stage",
    "mia_loss_auc",
    "forget_accuracy",
    "retain_accuracy",
]


def single_unlearning_rows(metrics: list[dict]) -> list[dict]:
    """The paper's single-unlearning table: N = 1 cells, LOSS-attack AUC, F.Acc and R.Acc."""
    return [{c: row[c] for c in SINGLE_COLUMNS} for row in metrics if row["n_requests"] == 1]


def latex_table(rows: list[dict]) -> str:
    """The single-unlearning table as a LaTeX tabular (booktabs): one line per method and
    learning rate, MIA / F.Acc / R.Acc for each stage; with several seeds, their mean and standard
    deviation."""
    stages = STAGES
    header = " & ".join(
        ["Model", "Data", "Method", "lr"] + [f"{m} ({s[0].upper()})" for s in stages for m in ("MIA", "F.Acc", "R.Acc")]
    )
    lines = ["\\begin{tabular}{llll" + "r" * 9 + "}", "\\toprule", header + " \\\\", "\\midrule"]
    cells: dict[tuple, dict[str, list]] = {}
    for row in rows:
        point = (row["model"], row["dataset"], row["method"], row["learning_rate"])
        cells.setdefault(point, {}).setdefault(row["stage"], []).append(row)
    for (model, dataset, method, lr), by_stage in cells.items():
        values = [
            _fmt_over_seeds([r[m] for r in by_stage.get(s, [])])
            for s in stages
            for m in ("mia_loss_auc", "forget_accuracy", "retain_accuracy")
        ]
        lines.append(" & ".join([*map(_latex, (model, dataset, method, str(lr))), *values]) + " \\\\")
    lines += ["\\bottomrule", "\\end{tabular}", ""]
    return "\n".join(lines)


def _latex(text: str) -> str:
    return text.replace("\\", "\\textbackslash{}").replace("_", "\\_").replace("&", "\\&").replace("%", "\\%")


def _fmt(value) -> str:
    number = _number(value)
    return "--" if number != number else f"{number:.3f}"


def _fmt_over_seeds(values: list) -> str:
    """One seed's value, or the mean $\\pm$ standard deviation of several."""
    if len(values) < 2:
        return _fmt(values[0] if values else None)
    summary = summarise(values)
    if summary["sd"] is None:
        return _fmt(summary["mean"])
    return f"{summary['mean']:.3f} $\\pm$ {summary['sd']:.3f}"


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def _number(value) -> float:
    return float("nan") if value is None or value == "" else float(value)


def representation_rows(
    cells: Iterable[Cell], stages: Sequence[str] = CELL_STAGES, results: str = RESULTS
) -> dict[str, list]:
    """Per-layer diagnostics, their per-split summaries, Fisher comparisons (on each sample set)
    and the histograms of the Fisher on the cell's forgotten samples."""
    tables: dict[str, list] = {"layers": [], "summary": [], "fisher": [], "histograms": []}
    base_histograms_done = set()
    for cell in cells:
        for stage in stages:
            result = read_json(diagnostics_json(cell, stage, results))
            key = cell_key(cell, stage)
            for split, values in result["splits"].items():
                tables["summary"].append(
                    {
                        **key,
                        "split": split,
                        "mean_cka": values["mean_cka"],
                        "mean_pca_distance": values["mean_pca_distance"],
                    }
                )
                for index, layer in enumerate(result["layers"]):
                    tables["layers"].append(
                        {
                            **key,
                            "split": split,
                            "layer_index": index,
                            "layer": layer,
                            **{m: values[m][index] for m in LAYER_MEASURES},
                        }
                    )
            for sample_set, result_key in FISHER_SAMPLE_SETS.items():
                tables["fisher"].extend(_fisher_rows(key, sample_set, result[result_key]))
            fisher = result["fisher"]
            for index, layer in enumerate(fisher.get("layers", [])):
                tables["histograms"].extend(_histogram_rows(key, layer, fisher["bins"], fisher["histogram"][index]))
                # The base model's Fisher on the cell's forgotten samples depends on its seed and N only.
                base_key = (cell.model, cell.dataset, cell.seed, cell.n_requests, layer)
                if base_key not in base_histograms_done:
                    base_histograms_done.add(base_key)
                    base = {**key, "method": "", "learning_rate": "", "stage": "base"}
                    tables["histograms"].extend(
                        _histogram_rows(base, layer, fisher["bins"], fisher["histogram_base"][index])
                    )
    return tables


def _fisher_rows(key: dict, sample_set: str, fisher: Mapping) -> list[dict]:
    """One row per decoder layer of a Fisher comparison (none when no Fisher was computed)."""
    if not fisher:
        return []
    return [
        {
            **key,
            "sample_set": sample_set,
            "samples": fisher["samples"],
            "layer": layer,
            **{m: fisher[m][index] for m in FISHER_MEASURES},
        }
        for index, layer in enumerate(fisher["layers"])
    ]


def _histogram_rows(key: dict, layer: str, bins: list[float], counts: list[int]) -> list[dict]:
    return [
        {**key, "layer": layer, "bin_low": low, "bin_high": high, "count": count}
        for low, high, count in zip(bins[:-1], bins[1:], counts)
    ]


def membership_probe_rows(cells: Iterable[Cell], metrics: list[dict], results: str = RESULTS) -> list[dict]:
    """The membership probe's AUC per layer of each unlearned and relearned model and of the base
    model (once per (model, dataset, seed, N): its probe depends on the cell's forget set only; method
    and learning rate empty), with the LOSS attack's AUC of the same stage from the metrics rows.
    None without a probe (`diagnostics.membership_probe.enabled: false`)."""
    output_mia = {tuple(row[c] for c in KEY_COLUMNS): row["mia_loss_auc"] for row in metrics}
    rows, base_done = [], set()
    for cell in cells:
        for stage in CELL_STAGES:
            result = read_json(diagnostics_json(cell, stage, results))
            probe, layers = result.get("membership_probe") or {}, result["layers"]
            if not probe:
                continue
            sides = [(cell_key(cell, stage), probe["stage"], cell_key(cell, stage))]
            base_point = (cell.model, cell.dataset, cell.seed, cell.n_requests)
            if base_point not in base_done:
                base_done.add(base_point)
                base = {**cell_key(cell, "base"), "method": "", "learning_rate": ""}
                sides.append((base, probe["base"], cell_key(cell, "base")))
            for key, side, metrics_key in sides:
                mia = output_mia.get(tuple(metrics_key[c] for c in KEY_COLUMNS))
                for index, layer in enumerate(layers):
                    rows.append(
                        {
                            **key,
                            "layer_index": index,
                            "layer": layer,
                            "pooling": side["pooling"],
                            "samples_per_class": side["samples_per_class"],
                            "folds": side["folds"],
                            "probe_auc": side["auc"][index],
                            "converged": side["converged"][index],
                            "output_mia_loss_auc": mia,
                        }
                    )
    return rows


def logit_lens_rows(cells: Iterable[Cell], results: str = RESULTS) -> list[dict]:
    """Per cell, stage (base, unlearned, relearned), sample set (the cell's forget set, retain
    probes, holdout) and captured layer: the logit lens's target accuracy and mean target
    log-probability. The base model's rows come from the unlearned stage's diagnostics (the base
    on the cell's own forget set); a cell whose captures hold no lens has no rows."""
    rows = []
    for cell in cells:
        for stage in CELL_STAGES:
            lens = read_json(diagnostics_json(cell, stage, results)).get("logit_lens") or {}
            readouts = {"base": lens.get("base")} if stage == "unlearned" else {}
            readouts[stage] = lens.get("stage")
            for name, per_split in readouts.items():
                for split, values in (per_split or {}).items():
                    rows.extend(
                        {
                            **cell_key(cell, name),
                            "split": split,
                            "layer_index": index,
                            "layer": layer,
                            "accuracy": values["accuracy"][index],
                            "mean_logprob": values["mean_logprob"][index],
                            "targets": values["targets"][index],
                        }
                        for index, layer in enumerate(lens["layers"])
                    )
    return rows


def request_rows(cells: Iterable[Cell], results: str = RESULTS) -> list[dict]:
    """Accuracies after each unlearning request (the continual-unlearning curves)."""
    rows = []
    for cell in cells:
        curve = read_json(curve_json(cell, "requests", results))
        for point in curve["requests"]:
            rows.append(
                {
                    **_cell_only(cell),
                    "request": point["request"],
                    "forget_seen_accuracy": point["forget_seen"]["accuracy"],
                    "forget_request_accuracy": point["forget_request"]["accuracy"],
                    "retain_accuracy": point["retain"]["accuracy"],
                    "collapsed": curve["collapsed"],
                }
            )
    return rows


def relearning_rows(cells: Iterable[Cell], results: str = RESULTS) -> list[dict]:
    """Accuracies along relearning (the relearning-efficiency curves)."""
    rows = []
    for cell in cells:
        curve = read_json(curve_json(cell, "relearning", results))
        for point in curve["steps"]:
            rows.append(
                {
                    **_cell_only(cell),
                    "step": point["step"],
                    "forget_accuracy": point["forget"]["accuracy"],
                    "retain_accuracy": point["retain"]["accuracy"],
                    "collapsed": curve["collapsed"],
                }
            )
    return rows


def reversal_rows(cells: Iterable[Cell], results: str = RESULTS) -> dict[str, list]:
    """Controlled recovery per attack budget (which one is primary, which matched to the forget set,
    and how the control was measured), measured on the forgotten samples relearned (`forgotten`)
    and, in a row of its own, on the held-out ones (`held_out`: relearning saw the other part; its
    controlled recovery is the latent recovery); and forget gains under quantization."""
    tables: dict[str, list] = {"recovery": [], "quantization": []}
    for cell in cells:
        reversal = read_json(curve_json(cell, "reversal", results))
        key, unlearned, collapsed = _cell_only(cell), reversal["unlearned"], reversal["collapsed"]
        primary = None
        for budget in reversal["budgets"]:
            tables["recovery"].append(
                {
                    **key,
                    "measured_on": FORGOTTEN,
                    "relearn_steps": budget["steps"],
                    "relearn_learning_rate": lr_label(budget["learning_rate"]),
                    "primary": budget["primary"],
                    "matched": budget["matched"],
                    "control_kind": reversal["control"],
                    "forget_unlearned": unlearned["forget"]["accuracy"],
                    "forget_relearned": budget["relearned"]["forget"]["accuracy"],
                    "forget_gain": budget["forget_gain"],
                    "control_unlearned": unlearned["unseen"]["accuracy"],
                    "control_relearned": budget["control"]["unseen"]["accuracy"],
                    "control_gain": budget["control_gain"],
                    "controlled_recovery": budget["controlled_recovery"],
                    "retain_relearned": budget["relearned"]["retain"]["accuracy"],
                    "collapsed": collapsed,
                }
            )
            if budget["primary"]:
                primary = budget["controlled_recovery"]
        held_out = reversal.get("held_out")
        if held_out:
            before, after = held_out["unlearned"], held_out["relearned"]
            tables["recovery"].append(
                {
                    **key,
                    "measured_on": HELD_OUT,
                    "relearn_steps": held_out["steps"],
                    "relearn_learning_rate": lr_label(held_out["learning_rate"]),
                    "primary": False,
                    "matched": True,
                    "control_kind": SAME_RUN,
                    "forget_unlearned": before["held_out"]["accuracy"],
                    "forget_relearned": after["held_out"]["accuracy"],
                    "forget_gain": held_out["held_out_gain"],
                    "control_unlearned": before["unseen"]["accuracy"],
                    "control_relearned": after["unseen"]["accuracy"],
                    "control_gain": held_out["control_gain"],
                    "controlled_recovery": held_out["latent_recovery"],
                    "retain_relearned": after["retain"]["accuracy"],
                    "collapsed": collapsed,
                }
            )
        for quantized in reversal["quantization"]:
            tables["quantization"].append(
                {
                    **key,
                    "bits": quantized["bits"],
                    "forget_unlearned": unlearned["forget"]["accuracy"],
                    "forget_quantized": quantized["forget"]["accuracy"],
                    "forget_gain": quantized["forget_gain"],
                    "retain_unlearned": unlearned["retain"]["accuracy"],
                    "retain_quantized": quantized["retain"]["accuracy"],
                    "controlled_recovery": primary,
                    "collapsed": collapsed,
                }
            )
    return tables


def prediction_cell_rows(
    regimes: list[dict],
    summary: list[dict],
    fisher: list[dict],
    lens: Sequence[dict] = (),
    probe: Sequence[dict] = (),
) -> list[dict]:
    """Per cell: each predictor and the recoveries it should predict.

    The representation predictors compare the unlearned model with the base on the `common`
    samples (split `common` of the summary, sample set `common` of the Fisher), which do not
    change with N: on the cell's own forget set a cell with N = 100 would be measured on a
    hundred times the samples of one with N = 1. The token predictor is the forgetting share;
    the targets are the controlled recovery of the matched budget and the held-out latent
    recovery, all shares of the cell's memorisation gap. Two read what the output no longer says,
    on the cell's own forget set (the samples whose return they should foresee): the logit lens's
    excess (the best layer's forget accuracy minus the output's, the final norm's) and the mean
    over layers of the membership probe's AUC (forget against holdout), both of the unlearned
    model; None where the capture has no lens or the probe is off.
    """
    representations = {_cell_of(r): r for r in summary if r["stage"] == "unlearned" and r["split"] == "common"}
    js: dict[tuple, list[float]] = {}
    for row in fisher:
        if row["stage"] == "unlearned" and row["sample_set"] == "common":
            js.setdefault(_cell_of(row), []).append(_number(row["js_distance"]))
    excess, auc = _lens_excess(lens), _mean_probe_auc(probe)
    rows = []
    for cell in regimes:
        key = _cell_of(cell)
        summary_row = representations.get(key, {})
        rows.append(
            {
                **{c: cell[c] for c in CELL_COLUMNS},
                "mean_cka": summary_row.get("mean_cka"),
                "mean_pca_distance": summary_row.get("mean_pca_distance"),
                "fisher_js": fmean(js[key]) if js.get(key) else None,
                "forgetting": cell["forgetting"],
                "lens_excess": excess.get(key),
                "probe_auc": auc.get(key),
                **{target: cell[target] for target in PREDICTION_TARGETS},
                "forgotten": cell["forgotten"],
                "regime_paper": cell["regime_paper"],
                "regime_controlled": cell["regime_controlled"],
                "regime_held_out": cell["regime_held_out"],
                "collapsed": cell["collapsed"],
            }
        )
    return rows


def _lens_excess(lens: Iterable[dict]) -> dict[tuple, float]:
    """Per cell: the unlearned model's best logit-lens forget accuracy over layers minus its
    output's (the last layer's)."""
    by_cell: dict[tuple, list[tuple[int, float]]] = {}
    for row in lens:
        if row["stage"] == "unlearned" and row["split"] == "forget" and _optional(row["accuracy"]) is not None:
            by_cell.setdefault(_cell_of(row), []).append((int(row["layer_index"]), float(row["accuracy"])))
    excess = {}
    for key, layers in by_cell.items():
        accuracies = [value for _, value in sorted(layers)]
        excess[key] = max(accuracies) - accuracies[-1]
    return excess


def _mean_probe_auc(probe: Iterable[dict]) -> dict[tuple, float]:
    """Per cell: the unlearned model's membership-probe AUC averaged over layers (those with one)."""
    by_cell: dict[tuple, list[float]] = {}
    for row in probe:
        value = _optional(row["probe_auc"])
        if row["stage"] == "unlearned" and value is not None and math.isfinite(value):
            by_cell.setdefault(_cell_of(row), []).append(value)
    return {key: fmean(values) for key, values in by_cell.items()}


def prediction_groups(cell_rows: list[dict]) -> dict[tuple[str, str], list[dict]]:
    """The cells pooled for one correlation: per (model, dataset) and, for a model with several
    datasets, per model over them (dataset `all`). Models are never pooled: their diagnostics
    live on different scales."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for row in cell_rows:
        groups.setdefault((row["model"], row["dataset"]), []).append(row)
    models: dict[str, list[dict]] = {}
    for row in cell_rows:
        models.setdefault(row["model"], []).append(row)
    for model, members in models.items():
        if len({row["dataset"] for row in members}) > 1:
            groups[(model, "all")] = members
    return groups


def cell_set(members: list[dict], name: str) -> list[dict]:
    """The cells of a group that a correlation runs over (`CELL_SETS`)."""
    return [row for row in members if _flag(row["forgotten"])] if name == "forgotten" else members


def prediction_rows(cell_rows: list[dict], seed: int = 0) -> list[dict]:
    """Spearman's rho of each predictor with each target (`PREDICTION_TARGETS`), with a bootstrap
    interval over grid points and their seeds, and the number of cells (a grid point's seeds
    each count) and of grid points with both numbers: per group (`prediction_groups`), over the
    cells that forgot and over all of them."""
    rows = []
    for (model, dataset), members in prediction_groups(cell_rows).items():
        for target in PREDICTION_TARGETS:
            for name in CELL_SETS:
                picked = cell_set(members, name)
                recovery = [_optional(r[target]) for r in picked]
                points = [tuple(r[c] for c in GRID_POINT_COLUMNS) for r in picked]
                for predictor in PREDICTORS:
                    result = correlate([_optional(r[predictor]) for r in picked], recovery, seed=seed, clusters=points)
                    rows.append(
                        {
                            "model": model,
                            "dataset": dataset,
                            "target": target,
                            "cell_set": name,
                            "diagnostic": predictor,
                            **result,
                        }
                    )
    return rows


def _optional(value) -> float | None:
    return None if value is None or value == "" else float(value)


def _cell_only(cell: Cell) -> dict:
    key = cell_key(cell, "")
    del key["stage"]
    return key


def write_csv(path: str | os.PathLike, columns: Sequence[str], rows: Iterable[Mapping]) -> None:
    """Rows as a CSV with exactly `columns`: a row with a column missing or one more is refused,
    naming the file and the columns, before anything is written."""
    rows, expected = list(rows), set(columns)
    for index, row in enumerate(rows):
        if set(row) != expected:
            raise ValueError(
                f"{path}: row {index} does not have the table's columns: missing "
                f"{sorted(expected - set(row))}, unexpected {sorted(set(row) - expected)}"
            )
    with atomic_path(path) as tmp:
        with tmp.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(columns))
            writer.writeheader()
            for row in rows:
                writer.writerow({k: "" if row[k] is None else row[k] for k in columns})


def read_csv(path: str | os.PathLike) -> list[dict]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


# --------------------------------------------------------------------------- registry


class GridResults:
    """What the row builders read: the grid's cells, the folder of their per-cell results, the
    regime thresholds and the seed of the bootstrap. A table built from other tables asks for
    them with `rows(name)`; each table and each shared reader (`read`) runs once."""

    def __init__(
        self, grid: Sequence[Cell], results: str = RESULTS, regimes: Mapping[str, float] | None = None, seed: int = 0
    ):
        self.grid, self.results, self.regimes, self.seed = list(grid), results, regimes or {}, seed
        self._built: dict[str, list[dict]] = {}
        self._read: dict[Callable, Any] = {}

    def rows(self, name: str) -> list[dict]:
        if name not in self._built:
            self._built[name] = TABLES[name].build(self)
        return self._built[name]

    def read(self, reader: Callable[..., Any]) -> Any:
        """The result of `reader(grid, results=...)`, read once for every table that needs it."""
        if reader not in self._read:
            self._read[reader] = reader(self.grid, results=self.results)
        return self._read[reader]


@dataclass(frozen=True)
class Table:
    """A tidy table, `results/tables/<name>.csv`. `caption`: shown in the report, with the text of
    workflow/report/tables/<name>.rst (or of `<caption>.rst`, when a name). `renderings`: other
    files made from its rows, by suffix (`<name>.<suffix>`).

    Replicates: `keys` names a row without its `seed` (a grid point's row, which each seed
    repeats); a table with keys is summarised over seeds in `<name>_over_seeds` when `summarised`,
    and figures draw it merged over seeds. `categories`: its columns whose agreement over seeds
    `<name>_agreement` gives."""

    columns: Sequence[str]
    build: Callable[[GridResults], list[dict]]
    caption: bool | str = True
    renderings: Mapping[str, Callable[[list[dict]], str]] = field(default_factory=dict)
    keys: Sequence[str] = ()
    summarised: bool = True
    categories: Sequence[str] = ()


def _representations(part: str) -> Callable[[GridResults], list[dict]]:
    return lambda grid: grid.read(representation_rows)[part]


def _reversal(part: str) -> Callable[[GridResults], list[dict]]:
    return lambda grid: grid.read(reversal_rows)[part]


def _point(columns: Sequence[str], upto: str) -> list[str]:
    """A table's key columns without the seed: its columns up to and including `upto`."""
    return [c for c in columns[: list(columns).index(upto) + 1] if c != "seed"]


# A table built from others reads them through `GridResults.rows`, whatever their order here.
TABLES: dict[str, Table] = {
    "metrics": Table(METRICS_COLUMNS, lambda grid: metrics_rows(grid.grid, results=grid.results), keys=POINT_COLUMNS),
    "benchmarks": Table(
        BENCHMARK_COLUMNS,
        lambda grid: benchmark_rows(grid.grid, results=grid.results),
        keys=_point(BENCHMARK_COLUMNS, "problems"),
    ),
    "recovery": Table(RECOVERY_COLUMNS, _reversal("recovery"), keys=_point(RECOVERY_COLUMNS, "control_kind")),
    "quantization": Table(QUANTIZATION_COLUMNS, _reversal("quantization"), keys=_point(QUANTIZATION_COLUMNS, "bits")),
    "regimes": Table(
        REGIME_COLUMNS,
        lambda grid: regime_rows(grid.rows("metrics"), grid.rows("recovery"), grid.regimes),
        keys=GRID_POINT_COLUMNS,
        categories=REGIME_CATEGORIES,
    ),
    "single_unlearning": Table(
        SINGLE_COLUMNS,
        lambda grid: single_unlearning_rows(grid.rows("metrics")),
        renderings={"tex": latex_table},
        keys=_point(SINGLE_COLUMNS, "stage"),
        summarised=False,
    ),
    "representations": Table(
        REPRESENTATION_COLUMNS, _representations("layers"), keys=_point(REPRESENTATION_COLUMNS, "layer")
    ),
    "representation_summary": Table(
        SUMMARY_COLUMNS, _representations("summary"), keys=_point(SUMMARY_COLUMNS, "split")
    ),
    "fisher": Table(FISHER_COLUMNS, _representations("fisher"), keys=_point(FISHER_COLUMNS, "layer")),
    "fisher_histograms": Table(
        HISTOGRAM_COLUMNS,
        _representations("histograms"),
        caption=False,
        keys=_point(HISTOGRAM_COLUMNS, "bin_high"),
        summarised=False,
    ),
    "membership_probe": Table(
        PROBE_COLUMNS,
        lambda grid: membership_probe_rows(grid.grid, grid.rows("metrics"), results=grid.results),
        keys=_point(PROBE_COLUMNS, "folds"),
    ),
    "logit_lens": Table(
        LOGIT_LENS_COLUMNS,
        lambda grid: logit_lens_rows(grid.grid, results=grid.results),
        keys=_point(LOGIT_LENS_COLUMNS, "layer"),
    ),
    "prediction_cells": Table(
        PREDICTION_CELL_COLUMNS,
        lambda grid: prediction_cell_rows(
            grid.rows("regimes"),
            grid.rows("representation_summary"),
            grid.rows("fisher"),
            grid.rows("logit_lens"),
            grid.rows("membership_probe"),
        ),
        caption=False,
    ),
    "prediction": Table(PREDICTION_COLUMNS, lambda grid: prediction_rows(grid.rows("prediction_cells"), grid.seed)),
    "findings": Table(
        ["model", "seed", *FINDING_COLUMNS[1:]],
        lambda grid: findings_per_seed(
            grid.rows("regimes"), grid.rows("representation_summary"), grid.rows("representations"), grid.rows("fisher")
        ),
        keys=["model", "claim"],
        summarised=False,
        categories=["verdict"],
    ),
    "requests": Table(
        REQUEST_COLUMNS,
        lambda grid: request_rows(grid.grid, results=grid.results),
        keys=_point(REQUEST_COLUMNS, "request"),
    ),
    "relearning": Table(
        RELEARNING_COLUMNS,
        lambda grid: relearning_rows(grid.grid, results=grid.results),
        keys=_point(RELEARNING_COLUMNS, "step"),
    ),
}


def findings_per_seed(
    regimes: list[dict], summary: list[dict], representations: list[dict], fisher: list[dict]
) -> list[dict]:
    """The paper's claims (findings.py) checked on each seed's cells on their own."""
    rows = []
    for seed in seeds_of(regimes):
        tables = [[r for r in table if int(r["seed"]) == seed] for table in (regimes, summary, representations, fisher)]
        rows += [{"model": row["model"], "seed": seed, **row} for row in finding_rows(*tables)]
    return rows


def _replicate_tables(tables: Mapping[str, Table]) -> dict[str, Table]:
    """Per table with keys: `<name>_over_seeds`, its measures summarised over each key's seeds,
    and, for a table with categories, `<name>_agreement`, how many seeds agree on each."""
    derived = {}
    for name, table in tables.items():
        if table.keys and table.summarised:
            derived[f"{name}_over_seeds"] = Table(
                [*table.keys, *OVER_SEEDS_COLUMNS],
                lambda grid, name=name, keys=table.keys: over_seeds(grid.rows(name), keys),
                caption="over_seeds" if table.caption else False,
            )
        if table.categories:
            derived[f"{name}_agreement"] = Table(
                [*table.keys, *AGREEMENT_COLUMNS],
                lambda grid, name=name, table=table: agreement(grid.rows(name), table.keys, table.categories),
                caption="agreement",
            )
    return derived


TABLES.update(_replicate_tables(TABLES))


def caption_of(name: str) -> str | None:
    """The stem of a table's caption in workflow/report/tables/, or None (not in the report)."""
    caption = TABLES[name].caption
    return (name if caption is True else caption) or None


def table_files(name: str) -> dict[str, str]:
    """The files of one table below results/tables/, by output name: `<name>` for the CSV and
    `<name>_<suffix>` for each rendering."""
    table = TABLES[name]
    return {name: f"{name}.csv", **{f"{name}_{suffix}": f"{name}.{suffix}" for suffix in table.renderings}}


def write_tables(grid: GridResults, outputs: Mapping[str, str | os.PathLike]) -> None:
    """Every registered table (and its renderings) to the path of its output name (`table_files`)."""
    for name, table in TABLES.items():
        rows = grid.rows(name)
        write_csv(outputs[name], table.columns, rows)
        for suffix, render in table.renderings.items():
            write_text(outputs[f"{name}_{suffix}"], render(rows))
