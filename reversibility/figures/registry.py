"""Every figure drawn per (model, dataset), declared once: its name (the output file stem, and
its caption workflow/report/figures/<name>.rst), the function that draws it, the tables it
reads, its category in the report, and whether only experiments that declare benchmarks draw it
(a figure of nothing is not a result).

The Snakefile reads this at every parse, in every job: it imports neither matplotlib nor torch,
and a drawing function is named as "<module>:<function>" of this package, imported only when
the figure is drawn.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping

CATEGORIES = ("Token metrics", "Regimes", "Representations", "Reversal")


@dataclass(frozen=True)
class Figure:
    name: str
    drawn_by: str  # "<module>:<function>" in reversibility.figures
    tables: tuple[str, ...]  # in the order of the drawing function's arguments
    category: str
    needs_benchmarks: bool = False

    def __post_init__(self):
        if self.category not in CATEGORIES:
            raise ValueError(f"figure {self.name}: category {self.category!r} is not one of {CATEGORIES}")

    def function(self) -> Callable[..., int]:
        module, function = self.drawn_by.split(":")
        return getattr(importlib.import_module(f"{__package__}.{module}"), function)

    def draw(self, tables: Mapping[str, list[dict]], model: str, dataset: str, out_dir: str | os.PathLike) -> int:
        """This figure of one (model, dataset), as `out_dir/<name>.png` and `.pdf`, from the rows
        of its tables merged over seeds (`merge_replicates`); returns its axes count."""
        inputs = [
            merge_replicates(table, [r for r in tables[table] if r["model"] == model and r["dataset"] == dataset])
            for table in self.tables
        ]
        return self.function()(*inputs, Path(out_dir) / self.name)


FIGURES: dict[str, Figure] = {
    figure.name: figure
    for figure in (
        Figure("accuracy_trajectory", "token_figures:accuracy_trajectory", ("metrics",), "Token metrics"),
        Figure("single_unlearning", "token_figures:single_unlearning", ("metrics",), "Token metrics"),
        Figure("continual_heatmaps", "token_figures:continual_heatmaps", ("metrics",), "Token metrics"),
        Figure("request_curves", "token_figures:request_curves", ("requests",), "Token metrics"),
        Figure("relearning_curves", "token_figures:relearning_curves", ("relearning",), "Token metrics"),
        Figure(
            "benchmark_accuracy",
            "token_figures:benchmark_accuracy",
            ("benchmarks",),
            "Token metrics",
            needs_benchmarks=True,
        ),
        Figure("regime_map", "token_figures:regime_map", ("regimes",), "Regimes"),
        Figure("cka_per_layer", "layer_figures:cka_per_layer", ("representations",), "Representations"),
        Figure("pca_similarity", "layer_figures:pca_similarity_per_layer", ("representations",), "Representations"),
        Figure("pca_shift", "layer_figures:pca_shift_scatter", ("representations",), "Representations"),
        Figure(
            "fisher_histograms", "layer_figures:fisher_histograms", ("fisher_histograms", "fisher"), "Representations"
        ),
        Figure("membership_probe", "layer_figures:membership_probe", ("membership_probe",), "Representations"),
        Figure("logit_lens", "layer_figures:logit_lens", ("logit_lens",), "Representations"),
        Figure("recovery_budgets", "recovery_figures:recovery_budgets", ("recovery",), "Reversal"),
        Figure("quantization_reversal", "recovery_figures:quantization_reversal", ("quantization",), "Reversal"),
        Figure(
            "prediction_scatter", "recovery_figures:prediction_scatter", ("prediction_cells", "prediction"), "Reversal"
        ),
    )
}


def merge_replicates(table: str, rows: list[dict]) -> list[dict]:
    """A table's rows as figures draw them: with several seeds, one row per grid point's row
    (`replicates.collapse`: measures averaged, with `<measure>_low`/`_high` for bands and error
    bars; categories by majority, with `<column>_agreeing`). A table without keys (the prediction's
    cells) keeps every seed's rows; one seed's rows are drawn as they are."""
    from ..replicates import collapse, seeds_of
    from ..tables import TABLES

    keys = TABLES[table].keys
    if not keys or len(seeds_of(rows)) < 2:
        return rows
    return collapse(rows, keys)


def per_experiment(needs_benchmarks: bool) -> list[Figure]:
    """The figures one rule draws per (model, dataset): those of every experiment (False: rule
    figures) or those of experiments that declare benchmarks only (True: rule benchmark_figure)."""
    return [figure for figure in FIGURES.values() if figure.needs_benchmarks == needs_benchmarks]


def tables_read(needs_benchmarks: bool) -> list[str]:
    """The tables the figures of `per_experiment(needs_benchmarks)` read: the rule's inputs."""
    return list(dict.fromkeys(table for figure in per_experiment(needs_benchmarks) for table in figure.tables))


def draw(name: str, tables: Mapping[str, list[dict]], model: str, dataset: str, out_dir: str | os.PathLike) -> int:
    """One figure by name; returns its axes count."""
    return FIGURES[name].draw(tables, model, dataset, out_dir)


def draw_all(
    tables: Mapping[str, list[dict]],
    model: str,
    dataset: str,
    out_dir: str | os.PathLike,
    needs_benchmarks: bool = False,
) -> dict[str, int]:
    """Every figure of `per_experiment(needs_benchmarks)` for one (model, dataset) into `out_dir`;
    returns each figure's axes count."""
    return {figure.name: figure.draw(tables, model, dataset, out_dir) for figure in per_experiment(needs_benchmarks)}
