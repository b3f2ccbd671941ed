"""Where results live (the concrete paths of the rules' output patterns).

Aggregating stages (tables) read many per-cell files; these functions name them the same way
the rules' outputs do, below `results/`.
"""

from __future__ import annotations

from .config import Cell

RESULTS = "results"


def metrics_json(cell: Cell, stage: str) -> str:
    """Token metrics of a stage; the base model's are per N (they depend on the forget set)."""
    if stage == "base":
        return f"{RESULTS}/metrics/{cell.model}/{cell.dataset}/base/n{cell.n_requests}.json"
    return f"{RESULTS}/metrics/{cell.key}/{stage}.json"


def diagnostics_json(cell: Cell, stage: str) -> str:
    return f"{RESULTS}/diagnostics/{cell.key}/{stage}.json"


def curve_json(cell: Cell, kind: str) -> str:
    """Per-cell measures of kind `requests` (accuracies after each request), `relearning`
    (accuracies along relearning) or `reversal` (controlled recovery per attack budget and
    quantization)."""
    return f"{RESULTS}/metrics/{cell.key}/{kind}.json"


# Every tidy table (results/tables/<name>.csv), written by the tables rule.
TABLES = ("metrics", "regimes", "single_unlearning", "representations", "representation_summary", "fisher",
          "fisher_histograms", "requests", "relearning", "recovery", "quantization", "prediction_cells",
          "prediction")

# Every figure drawn per (model, dataset), with its report category; captions live in
# workflow/report/figures/<name>.rst and the drawing functions in figures.FIGURES.
FIGURE_KINDS = {
    "accuracy_trajectory": "Token metrics",
    "single_unlearning": "Token metrics",
    "continual_heatmaps": "Token metrics",
    "request_curves": "Token metrics",
    "relearning_curves": "Token metrics",
    "math_accuracy": "Token metrics",
    "regime_map": "Regimes",
    "cka_per_layer": "Representations",
    "pca_similarity": "Representations",
    "pca_shift": "Representations",
    "fisher_histograms": "Representations",
    "recovery_budgets": "Reversal",
    "quantization_reversal": "Reversal",
    "prediction_scatter": "Reversal",
}
