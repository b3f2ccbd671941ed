"""Figures of the token metrics: forget and retain accuracy through unlearning and relearning,
over requests and relearning steps, on benchmarks, and the regime each cell falls in."""

from __future__ import annotations

import math
from typing import Callable

import matplotlib
import numpy as np

from ..config import STAGES
from .frame import (
    agreement_suffix,
    band,
    cell_panels,
    colour,
    empty,
    error_bars,
    method_rank,
    methods_of,
    number,
    panels,
    save,
    values_of,
)

STAGE_COLOURS = {"base": "#999999", "unlearned": "#d95f02", "relearned": "#1b9e77"}
REGIME_COLOURS = {
    "reversible, retain kept": "#4daf4a",
    "reversible, catastrophic": "#a6d96a",
    "irreversible, retain kept": "#e41a1c",
    "irreversible, catastrophic": "#984ea3",
    "hidden": "#fdae61",
    "deleted": "#2b83ba",
    "not measured": "#f0f0f0",
    "not forgotten": "#bdbdbd",
    "no memorisation gap": "#fdd0a2",
    "undetermined": "#ffffff",
}
# The two views of reversibility (metrics.regime): the paper's, on the raw relearned F.Acc, and
# the controlled one, on the unlearned F.Acc plus the controlled recovery; and hidden or deleted
# (metrics.held_out_regime), on forgotten samples the relearning never saw.
REGIME_VIEWS = {
    "regime_paper": "paper: raw relearned F.Acc",
    "regime_controlled": "controlled: minus the control's gain",
    "regime_held_out": "held out: samples never relearned",
}


def accuracy_trajectory(metrics: list[dict], stem, title: str = "") -> int:
    """F.Acc (solid) and R.Acc (dashed) from base to unlearned to relearned, per method; one
    panel per (N, lr): forgetting that relearning undoes climbs back up (the paper's Figure 1).
    With several seeds, their mean, and their 95% interval as a band."""

    def draw(ax, panel):
        for method in methods_of(panel):
            by_stage = {r["stage"]: r for r in panel if r["method"] == method}
            for column, style, label in (("forget_accuracy", "-", "F.Acc"), ("retain_accuracy", "--", "R.Acc")):
                ys = [number(by_stage[s][column]) if s in by_stage else math.nan for s in STAGES]
                ax.plot(range(3), ys, style, marker="o", color=colour(method), label=f"{method} {label}")
                band(ax, range(3), [by_stage.get(s) for s in STAGES], column, colour(method))
        ax.set_xticks(range(3), STAGES)

    return cell_panels(
        metrics,
        stem,
        draw,
        "token accuracy",
        ylim=(0, 1),
        title=title or "Forget (solid) and retain (dashed) accuracy through unlearning and relearning",
    )


def _stage_bars(
    ax,
    rows: list[dict],
    cells: list[tuple],
    key: Callable[[dict], tuple],
    column: str,
    tick_labels: list[str],
    title: str,
) -> None:
    """Grouped bars, one group per cell and one bar per stage, of `column` (0 to 1), with the
    interval over seeds as error bars when the rows carry one."""
    width = 0.8 / len(STAGES)
    for k, stage in enumerate(STAGES):
        picked = [next((r for r in rows if r["stage"] == stage and key(r) == cell), None) for cell in cells]
        values = [number(r[column]) if r else math.nan for r in picked]
        ax.bar(
            np.arange(len(cells)) + (k - 1) * width,
            values,
            width,
            label=stage,
            color=STAGE_COLOURS[stage],
            yerr=error_bars(picked, column),
            error_kw={"linewidth": 0.8},
        )
    ax.set_xticks(range(len(cells)), tick_labels, fontsize=7, rotation=90)
    ax.set_title(title, fontsize=10)
    ax.set_ylim(0, 1)
    ax.grid(axis="y", alpha=0.3)


def single_unlearning(metrics: list[dict], stem, title: str = "") -> int:
    """N = 1: LOSS-attack AUC, F.Acc and R.Acc of each method x learning rate, per stage."""
    rows = [r for r in metrics if r["n_requests"] == "1"]
    if not rows:
        return empty(stem, title or "Single unlearning", "no N = 1 cell in the grid")
    cells = sorted({(r["method"], r["learning_rate"]) for r in rows}, key=lambda c: (method_rank(c[0]), float(c[1])))
    measures = (("mia_loss_auc", "LOSS-attack AUC"), ("forget_accuracy", "F.Acc"), ("retain_accuracy", "R.Acc"))
    fig, axes = panels(1, len(measures), width=max(4.0, 0.55 * len(cells) + 1.5), height=3.4)
    for ax, (column, label) in zip(axes[0], measures):
        _stage_bars(
            ax,
            rows,
            cells,
            lambda r: (r["method"], r["learning_rate"]),
            column,
            [f"{m}\n{lr}" for m, lr in cells],
            label,
        )
    axes[0][0].legend(fontsize=8)
    fig.suptitle(title or "Single unlearning (N = 1)")
    fig.tight_layout()
    return save(fig, stem)


def continual_heatmaps(metrics: list[dict], stem, title: str = "") -> int:
    """Per method, N x learning-rate heatmaps of F.Acc and R.Acc after unlearning and relearning."""
    methods = methods_of(metrics)
    ns, lrs = values_of(metrics, "n_requests"), values_of(metrics, "learning_rate")
    columns = [
        ("forget_accuracy", "unlearned"),
        ("forget_accuracy", "relearned"),
        ("retain_accuracy", "unlearned"),
        ("retain_accuracy", "relearned"),
    ]
    fig, axes = panels(len(methods), len(columns), width=0.7 * len(lrs) + 1.8, height=0.45 * len(ns) + 1.3)
    image = None
    for i, method in enumerate(methods):
        for j, (column, stage) in enumerate(columns):
            ax = axes[i][j]
            grid = np.full((len(ns), len(lrs)), np.nan)
            for r in metrics:
                if r["method"] == method and r["stage"] == stage:
                    grid[ns.index(r["n_requests"]), lrs.index(r["learning_rate"])] = number(r[column])
            image = ax.imshow(grid, vmin=0, vmax=1, cmap="viridis", aspect="auto", origin="lower")
            for (a, b), value in np.ndenumerate(grid):
                if math.isfinite(value):
                    ax.text(
                        b,
                        a,
                        f"{value:.2f}",
                        ha="center",
                        va="center",
                        fontsize=7,
                        color="white" if value < 0.6 else "black",
                    )
            ax.set_xticks(range(len(lrs)), lrs, fontsize=7)
            ax.set_yticks(range(len(ns)), ns, fontsize=7)
            ax.set_title(f"{method}: {'F.Acc' if column.startswith('forget') else 'R.Acc'} {stage}", fontsize=8)
            if j == 0:
                ax.set_ylabel("N requests")
            if i == len(methods) - 1:
                ax.set_xlabel("learning rate")
    if image is not None:
        fig.colorbar(image, ax=axes, fraction=0.02, label="token accuracy")
    fig.suptitle(title or "Continual unlearning: accuracy over N x learning rate")
    return save(fig, stem)


def _forget_and_retain(ax, panel: list[dict], step: str, forget: str) -> None:
    """Per method, `forget` accuracy (solid, with markers) and retain accuracy (dashed) against
    the integer column `step`; the forget accuracy's interval over seeds as a band."""
    for method in methods_of(panel):
        rows = sorted((r for r in panel if r["method"] == method), key=lambda r: int(r[step]))
        xs = [int(r[step]) for r in rows]
        ax.plot(
            xs,
            [number(r[forget]) for r in rows],
            "-",
            marker="o",
            markersize=3,
            color=colour(method),
            label=f"{method} forget",
        )
        band(ax, xs, rows, forget, colour(method))
        ax.plot(xs, [number(r["retain_accuracy"]) for r in rows], "--", color=colour(method), label=f"{method} retain")


def request_curves(requests: list[dict], stem, title: str = "") -> int:
    """Accuracy after each request: on everything requested so far (solid) and on retain samples
    (dashed), per method; one panel per (N, lr) with N > 1."""
    rows = [r for r in requests if int(r["n_requests"]) > 1]
    if not rows:
        return empty(stem, title or "Continual unlearning", "no cell with more than one request")

    def draw(ax, panel):
        _forget_and_retain(ax, panel, "request", "forget_seen_accuracy")
        ax.set_xlabel("request")  # on every row: each N has its own number of requests

    return cell_panels(
        rows, stem, draw, "token accuracy", ylim=(0, 1), title=title or "Accuracy after each unlearning request"
    )


def relearning_curves(relearning: list[dict], stem, title: str = "") -> int:
    """Forget accuracy (solid) and retain accuracy (dashed) against relearning steps."""

    def draw(ax, panel):
        _forget_and_retain(ax, panel, "step", "forget_accuracy")

    return cell_panels(
        relearning,
        stem,
        draw,
        "token accuracy",
        title=title or "Relearning efficiency",
        xlabel="relearning step",
        ylim=(0, 1),
    )


def benchmark_accuracy(benchmarks: list[dict], stem, title: str = "") -> int:
    """Accuracy of greedy answers per cell, one panel per benchmark, for base, unlearned and relearned."""
    names = list(dict.fromkeys(r["benchmark"] for r in benchmarks))
    if not names:
        return empty(stem, title or "Benchmark accuracy", "no benchmark in this experiment")
    cells = sorted(
        {(r["method"], r["n_requests"], r["learning_rate"]) for r in benchmarks},
        key=lambda c: (method_rank(c[0]), int(c[1]), float(c[2])),
    )
    fig, axes = panels(1, len(names), width=max(4.0, 0.5 * len(cells) + 1.5), height=3.4)
    for ax, name in zip(axes[0], names):
        rows = [r for r in benchmarks if r["benchmark"] == name]
        _stage_bars(
            ax,
            rows,
            cells,
            lambda r: (r["method"], r["n_requests"], r["learning_rate"]),
            "accuracy",
            [f"{m} N={n}\nlr={lr}" for m, n, lr in cells],
            f"{name} ({rows[0]['problems']} problems)",
        )
    axes[0][0].legend(fontsize=8)
    fig.suptitle(title or "Benchmark accuracy")
    fig.tight_layout()
    return save(fig, stem)


def regime_map(regimes: list[dict], stem, title: str = "") -> int:
    """The regime of every cell in each view, one panel each: methods down, (N, lr) across;
    cells whose forget accuracy fell below the never-seen level are marked damaged. With several
    seeds, the regime most seeds give and how many give it ("reversible, retain kept 3/3")."""
    methods = methods_of(regimes)
    columns = sorted({(r["n_requests"], r["learning_rate"]) for r in regimes}, key=lambda c: (int(c[0]), float(c[1])))
    fig, axes = panels(1, len(REGIME_VIEWS), width=1.3 * len(columns) + 2.5, height=0.45 * len(methods) + 1.6)
    for ax, (view, label) in zip(axes[0], REGIME_VIEWS.items()):
        _regime_panel(ax, regimes, view, methods, columns)
        ax.set_title(label, fontsize=9)
    fig.suptitle(title or "Regimes: reversible or irreversible forgetting, catastrophic or not; hidden or deleted")
    fig.tight_layout()
    return save(fig, stem)


def _regime_panel(ax, regimes: list[dict], view: str, methods: list[str], columns: list[tuple]) -> None:
    names = list(REGIME_COLOURS)
    grid = np.full((len(methods), len(columns)), np.nan)
    for r in regimes:
        i, j = methods.index(r["method"]), columns.index((r["n_requests"], r["learning_rate"]))
        grid[i, j] = names.index(r[view])
        text = r[view].replace(", ", "\n") + agreement_suffix(r, view)
        text += "\n(damaged)" if r["damaged"] == "True" else ""
        ax.text(j, i, text, ha="center", va="center", fontsize=6)
    cmap = matplotlib.colors.ListedColormap([REGIME_COLOURS[n] for n in names])
    ax.imshow(grid, cmap=cmap, vmin=-0.5, vmax=len(names) - 0.5, aspect="auto")
    ax.set_xticks(range(len(columns)), [f"N={n}\nlr={lr}" for n, lr in columns], fontsize=8)
    ax.set_yticks(range(len(methods)), methods, fontsize=8)
