"""Figures of reversal: how much forgetting comes back under relearning budgets and
quantization, and whether the diagnostics of the unlearned model predict it."""

from __future__ import annotations

import math

import numpy as np

from ..tables import CELL_SETS, HELD_OUT, PREDICTION_TARGETS, PREDICTORS
from .frame import band, cell_panels, colour, empty, error_bars, legend, methods_of, number, panels, save


def recovery_budgets(recovery: list[dict], stem, title: str = "") -> int:
    """Controlled recovery (solid) and raw forget gain (dashed) against the relearning budget,
    one line per method, one panel per (N, lr) of unlearning; the held-out recovery (relearning one
    part of the forgotten samples, measured on the other) last, apart."""
    if not recovery:
        return empty(stem, "Recovery against attack strength", "no relearning budgets")

    def budget(row) -> tuple:
        return (row["measured_on"] == HELD_OUT, float(row["relearn_learning_rate"]), int(row["relearn_steps"]))

    budgets = sorted({budget(r) for r in recovery})

    def draw(ax, panel):
        for method in methods_of(panel):
            by_budget = {budget(r): r for r in panel if r["method"] == method}
            for column, style, label in (("controlled_recovery", "-", "controlled"), ("forget_gain", "--", "raw")):
                ys = [number(by_budget[b][column]) if b in by_budget else math.nan for b in budgets]
                ax.plot(range(len(budgets)), ys, style, marker="o", color=colour(method), label=f"{method} {label}")
                if column == "controlled_recovery":
                    band(ax, range(len(budgets)), [by_budget.get(b) for b in budgets], column, colour(method))
        ax.axhline(0, color="black", linewidth=0.6)
        ticks = [f"{'held out, ' if held else ''}{steps} steps\nlr={rate:g}" for held, rate, steps in budgets]
        ax.set_xticks(range(len(budgets)), ticks, fontsize=7)

    return cell_panels(
        recovery,
        stem,
        draw,
        "forget accuracy gain",
        xlabel="relearning budget",
        width=max(4.0, 0.9 * len(budgets) + 1.5),
        title=title or "Recovery against attack strength: controlled (solid) and raw (dashed)",
    )


def quantization_reversal(quantization: list[dict], stem, title: str = "") -> int:
    """Per method, the forget-accuracy change under each quantization width beside the
    controlled relearning recovery; one panel per (N, lr)."""
    if not quantization:
        return empty(stem, "Quantization reversal", "no quantization widths configured")
    widths = sorted({int(r["bits"]) for r in quantization}, reverse=True)
    bars = [f"int{b}" for b in widths] + ["relearning"]

    def draw(ax, panel):
        methods = methods_of(panel)
        width = 0.8 / max(1, len(methods))
        for k, method in enumerate(methods):
            rows = {int(r["bits"]): r for r in panel if r["method"] == method}
            # A bar per width (its forget-accuracy change) and the relearning bar (any width's row).
            picked = [rows.get(b) for b in widths] + [next(iter(rows.values()), None)]
            columns = ["forget_gain"] * len(widths) + ["controlled_recovery"]
            ax.bar(
                np.arange(len(bars)) + (k - (len(methods) - 1) / 2) * width,
                [number(r[c]) if r else math.nan for r, c in zip(picked, columns)],
                width,
                color=colour(method),
                label=method,
                yerr=error_bars(picked, columns),
                error_kw={"linewidth": 0.8},
            )
        ax.axhline(0, color="black", linewidth=0.6)
        ax.set_xticks(range(len(bars)), bars, fontsize=8)

    return cell_panels(
        quantization,
        stem,
        draw,
        "forget accuracy gain",
        title=title or "Forget accuracy regained by quantizing the unlearned model, and by relearning",
    )


def prediction_scatter(cells: list[dict], prediction: list[dict], stem, title: str = "") -> int:
    """Each recovery target (rows: the controlled recovery of the matched budget, the held-out
    latent recovery) against each predictor (columns); cells that forgot are filled, the others
    hollow. Each panel's title gives Spearman's rho with its bootstrap interval over the cells
    that forgot and over all cells, read from the prediction table (so the figure shows the
    table's numbers)."""
    if not cells:
        return empty(stem, "Prediction of reversibility", "no cells")
    correlations = {(r["target"], r["cell_set"], r["diagnostic"]): r for r in prediction}
    fig, axes = panels(len(PREDICTION_TARGETS), len(PREDICTORS), width=3.4, sharey="row")
    for row, (target, target_label) in zip(axes, PREDICTION_TARGETS.items()):
        recovery = [number(r[target]) for r in cells]
        for ax, (name, label) in zip(row, PREDICTORS.items()):
            values = [number(r[name]) for r in cells]
            for method in methods_of(cells):
                for forgotten in (True, False):
                    picked = [
                        k
                        for k, r in enumerate(cells)
                        if r["method"] == method and (r["forgotten"] == "True") == forgotten
                    ]
                    if not picked:
                        continue
                    ax.scatter(
                        [values[k] for k in picked],
                        [recovery[k] for k in picked],
                        s=18,
                        edgecolors=colour(method),
                        facecolors=colour(method) if forgotten else "none",
                        label=method if forgotten else f"{method} (not forgotten)",
                    )
            ax.set_title(
                "\n".join(_rho_label(which, correlations[(target, which, name)]) for which in CELL_SETS), fontsize=8
            )
            ax.set_xlabel(label, fontsize=8)
            ax.axhline(0, color="black", linewidth=0.6)
            ax.grid(alpha=0.3)
        row[0].set_ylabel(target_label, fontsize=8)
    legend(fig, axes)
    fig.suptitle(title or "Do the diagnostics of the unlearned model predict how much comes back?")
    fig.tight_layout()
    return save(fig, stem)


def _rho_label(cell_set: str, row: dict) -> str:
    return (
        f"{cell_set}: rho = {number(row['spearman']):.2f} [{number(row['low']):.2f}, {number(row['high']):.2f}], "
        f"{row['cells']} cells"
    )
