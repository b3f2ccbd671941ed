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

KEY_COLUMNS = ["model", "dataset", "method", "n_requests", "learning_rate", "stage"]
SPLIT_COLUMNS = [f"{split}_{measure}" for split in ("forget", "retain", "holdout")
                 for measure in ("accuracy", "loss", "perplexity", "n_tokens")]
METRICS_COLUMNS = KEY_COLUMNS + SPLIT_COLUMNS + ["mia_loss_auc", "collapsed"]
CKA_COLUMNS = KEY_COLUMNS + ["split", "layer_index", "layer", "cka"]
CELL_COLUMNS = [c for c in KEY_COLUMNS if c != "stage"]
REQUEST_COLUMNS = CELL_COLUMNS + ["request", "forget_seen_accuracy", "forget_request_accuracy",
                                  "retain_accuracy", "collapsed"]
RELEARNING_COLUMNS = CELL_COLUMNS + ["step", "forget_accuracy", "retain_accuracy", "collapsed"]


def cell_key(cell: Cell, stage: str) -> dict:
    return {"model": cell.model, "dataset": cell.dataset, "method": cell.method,
            "n_requests": cell.n_requests, "learning_rate": lr_label(cell.learning_rate), "stage": stage}


def metrics_rows(cells: Iterable[Cell], stages: Sequence[str] = ("base", "unlearned", "relearned")) -> list[dict]:
    rows = []
    for cell in cells:
        for stage in stages:
            result = read_json(metrics_json(cell, stage))
            row = cell_key(cell, stage)
            for split in ("forget", "retain", "holdout"):
                for measure in ("accuracy", "loss", "perplexity", "n_tokens"):
                    row[f"{split}_{measure}"] = result[split][measure]
            row["mia_loss_auc"] = result["mia"]["loss_auc"]
            row["collapsed"] = result["collapsed"]
            rows.append(row)
    return rows


def cka_rows(cells: Iterable[Cell], stages: Sequence[str] = ("unlearned", "relearned")) -> list[dict]:
    rows = []
    for cell in cells:
        for stage in stages:
            result = read_json(diagnostics_json(cell, stage))
            for split, values in result["cka"].items():
                for index, (layer, value) in enumerate(zip(result["layers"], values)):
                    rows.append({**cell_key(cell, stage), "split": split, "layer_index": index,
                                 "layer": layer, "cka": value})
    return rows


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
