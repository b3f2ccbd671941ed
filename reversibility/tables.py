"""Tidy tables over the whole grid: one row per (model, dataset, method, N, lr, stage[, layer]).

Figures and users read these CSVs; the per-cell JSONs stay the source of truth.
"""

from __future__ import annotations

import csv
import os
from typing import Iterable, Mapping, Sequence

from .config import Cell, lr_label
from .io import atomic_path, read_json
from .layout import curve_json, diagnostics_json, metrics_json
from .metrics import ATTACKS, privacy_leak, regime

KEY_COLUMNS = ["model", "dataset", "method", "n_requests", "learning_rate", "stage"]
SPLIT_MEASURES = ("accuracy", "sequence_accuracy", "loss", "perplexity", "n_tokens")
SPLIT_COLUMNS = [f"{split}_{measure}" for split in ("forget", "retain", "holdout") for measure in SPLIT_MEASURES]
ATTACK_NAMES = tuple(ATTACKS)
MATH_STYLES = ("gsm8k", "math")
METRICS_COLUMNS = (KEY_COLUMNS + SPLIT_COLUMNS + [f"mia_{a}_auc" for a in ATTACK_NAMES]
                   + [f"privacy_leak_{a}" for a in ATTACK_NAMES] + [f"math_{s}_accuracy" for s in MATH_STYLES]
                   + ["collapsed"])
LAYER_MEASURES = ["cka", "cka_unbiased", "pc1_cosine", "subspace", "shift_pc1", "pc2", "spread_pc1",
                  "spread_pc2", "normalised_pc1", "normalised_pc2", "distance"]
REPRESENTATION_COLUMNS = KEY_COLUMNS + ["split", "layer_index", "layer"] + LAYER_MEASURES
SUMMARY_COLUMNS = KEY_COLUMNS + ["split", "mean_cka", "mean_pca_distance"]
FISHER_COLUMNS = KEY_COLUMNS + ["layer", "mass_base", "mass", "log10_mass_ratio", "js_distance"]
HISTOGRAM_COLUMNS = KEY_COLUMNS + ["layer", "bin_low", "bin_high", "count"]
CELL_COLUMNS = [c for c in KEY_COLUMNS if c != "stage"]
REGIME_COLUMNS = CELL_COLUMNS + ["forget_base", "forget_unlearned", "forget_relearned", "retain_base",
                                 "retain_unlearned", "retain_relearned", "forgotten", "reversible",
                                 "catastrophic", "regime", "collapsed"]
REQUEST_COLUMNS = CELL_COLUMNS + ["request", "forget_seen_accuracy", "forget_request_accuracy",
                                  "retain_accuracy", "collapsed"]
RELEARNING_COLUMNS = CELL_COLUMNS + ["step", "forget_accuracy", "retain_accuracy", "collapsed"]


def cell_key(cell: Cell, stage: str) -> dict:
    return {"model": cell.model, "dataset": cell.dataset, "method": cell.method,
            "n_requests": cell.n_requests, "learning_rate": lr_label(cell.learning_rate), "stage": stage}


def metrics_rows(cells: Iterable[Cell], stages: Sequence[str] = ("base", "unlearned", "relearned")) -> list[dict]:
    """One row per cell and stage; the privacy leak compares each attack's AUC with the base's."""
    rows = []
    for cell in cells:
        base = read_json(metrics_json(cell, "base"))
        for stage in stages:
            result = read_json(metrics_json(cell, stage))
            row = cell_key(cell, stage)
            for split in ("forget", "retain", "holdout"):
                for measure in SPLIT_MEASURES:
                    row[f"{split}_{measure}"] = result[split][measure]
            for attack in ATTACK_NAMES:
                row[f"mia_{attack}_auc"] = result["mia"][attack]
                row[f"privacy_leak_{attack}"] = privacy_leak(_number(result["mia"][attack]), _number(base["mia"][attack]))
            for style in MATH_STYLES:
                row[f"math_{style}_accuracy"] = ((result.get("math") or {}).get(style) or {}).get("accuracy")
            row["collapsed"] = result["collapsed"]
            rows.append(row)
    return rows


def regime_rows(metrics: list[dict], thresholds: Mapping[str, float]) -> list[dict]:
    """One row per cell: its forget and retain accuracies by stage and its regime."""
    by_cell: dict[tuple, dict[str, dict]] = {}
    for row in metrics:
        key = tuple(row[c] for c in CELL_COLUMNS)
        by_cell.setdefault(key, {})[row["stage"]] = row
    rows = []
    for key, stages in by_cell.items():
        accuracies = {stage: {"forget": _number(r["forget_accuracy"]), "retain": _number(r["retain_accuracy"])}
                      for stage, r in stages.items()}
        verdict = regime(accuracies["base"], accuracies["unlearned"], accuracies["relearned"], thresholds)
        rows.append({**dict(zip(CELL_COLUMNS, key)),
                     **{f"{split}_{stage}": accuracies[stage][split] for stage in ("base", "unlearned", "relearned")
                        for split in ("forget", "retain")},
                     **verdict, "collapsed": stages["unlearned"]["collapsed"]})
    return rows


SINGLE_COLUMNS = ["model", "dataset", "method", "learning_rate", "stage", "mia_loss_auc", "forget_accuracy",
                  "retain_accuracy"]


def single_unlearning_rows(metrics: list[dict]) -> list[dict]:
    """The paper's single-unlearning table: N = 1 cells, LOSS-attack AUC, F.Acc and R.Acc."""
    return [{c: row[c] for c in SINGLE_COLUMNS} for row in metrics if row["n_requests"] == 1]


def latex_table(rows: list[dict]) -> str:
    """The single-unlearning table as a LaTeX tabular (booktabs): one line per method and
    learning rate, MIA / F.Acc / R.Acc for each stage."""
    stages = ("base", "unlearned", "relearned")
    header = " & ".join(["Model", "Data", "Method", "lr"] + [f"{m} ({s[0].upper()})" for s in stages
                                                               for m in ("MIA", "F.Acc", "R.Acc")])
    lines = ["\\begin{tabular}{llll" + "r" * 9 + "}", "\\toprule", header + " \\\\", "\\midrule"]
    cells: dict[tuple, dict] = {}
    for row in rows:
        cells.setdefault((row["model"], row["dataset"], row["method"], row["learning_rate"]), {})[row["stage"]] = row
    for (model, dataset, method, lr), by_stage in cells.items():
        values = [_fmt(by_stage.get(s, {}).get(m)) for s in stages for m in ("mia_loss_auc", "forget_accuracy",
                                                                           "retain_accuracy")]
        lines.append(" & ".join([*map(_latex, (model, dataset, method, str(lr))), *values]) + " \\\\")
    lines += ["\\bottomrule", "\\end{tabular}", ""]
    return "\n".join(lines)


def _latex(text: str) -> str:
    return text.replace("\\", "\\textbackslash{}").replace("_", "\\_").replace("&", "\\&").replace("%", "\\%")


def _fmt(value) -> str:
    number = _number(value)
    return "--" if number != number else f"{number:.3f}"


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def _number(value) -> float:
    return float("nan") if value is None or value == "" else float(value)


def representation_rows(cells: Iterable[Cell], stages: Sequence[str] = ("unlearned", "relearned")) -> dict[str, list]:
    """Per-layer diagnostics, their per-split summaries, Fisher comparisons and histograms."""
    tables: dict[str, list] = {"layers": [], "summary": [], "fisher": [], "histograms": []}
    base_histograms_done = set()
    for cell in cells:
        for stage in stages:
            result = read_json(diagnostics_json(cell, stage))
            key = cell_key(cell, stage)
            for split, values in result["splits"].items():
                tables["summary"].append({**key, "split": split, "mean_cka": values["mean_cka"],
                                          "mean_pca_distance": values["mean_pca_distance"]})
                for index, layer in enumerate(result["layers"]):
                    tables["layers"].append({**key, "split": split, "layer_index": index, "layer": layer,
                                             **{m: values[m][index] for m in LAYER_MEASURES}})
            fisher = result["fisher"]
            if not fisher:
                continue
            for index, layer in enumerate(fisher["layers"]):
                tables["fisher"].append({**key, "layer": layer, **{m: fisher[m][index] for m in
                                         ("mass_base", "mass", "log10_mass_ratio", "js_distance")}})
                tables["histograms"].extend(_histogram_rows(key, layer, fisher["bins"], fisher["histogram"][index]))
                base_key = (cell.model, cell.dataset, layer)
                if base_key not in base_histograms_done:
                    base_histograms_done.add(base_key)
                    base = {**key, "method": "", "n_requests": "", "learning_rate": "", "stage": "base"}
                    tables["histograms"].extend(_histogram_rows(base, layer, fisher["bins"],
                                                                fisher["histogram_base"][index]))
    return tables


def _histogram_rows(key: dict, layer: str, bins: list[float], counts: list[int]) -> list[dict]:
    return [{**key, "layer": layer, "bin_low": low, "bin_high": high, "count": count}
            for low, high, count in zip(bins[:-1], bins[1:], counts)]


def request_rows(cells: Iterable[Cell]) -> list[dict]:
    """Accuracies after each unlearning request (the continual-unlearning curves)."""
    rows = []
    for cell in cells:
        curve = read_json(curve_json(cell, "requests"))
        for point in curve["requests"]:
            rows.append({**_cell_only(cell), "request": point["request"],
                         "forget_seen_accuracy": point["forget_seen"]["accuracy"],
                         "forget_request_accuracy": point["forget_request"]["accuracy"],
                         "retain_accuracy": point["retain"]["accuracy"], "collapsed": curve["collapsed"]})
    return rows


def relearning_rows(cells: Iterable[Cell]) -> list[dict]:
    """Accuracies along relearning (the relearning-efficiency curves)."""
    rows = []
    for cell in cells:
        curve = read_json(curve_json(cell, "relearning"))
        for point in curve["steps"]:
            rows.append({**_cell_only(cell), "step": point["step"],
                         "forget_accuracy": point["forget"]["accuracy"],
                         "retain_accuracy": point["retain"]["accuracy"], "collapsed": curve["collapsed"]})
    return rows


def _cell_only(cell: Cell) -> dict:
    key = cell_key(cell, "")
    del key["stage"]
    return key


def write_csv(path: str | os.PathLike, columns: Sequence[str], rows: Iterable[Mapping]) -> None:
    with atomic_path(path) as tmp:
        with tmp.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(columns))
            writer.writeheader()
            for row in rows:
                writer.writerow({k: "" if row[k] is None else row[k] for k in columns})


def read_csv(path: str | os.PathLike) -> list[dict]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))
