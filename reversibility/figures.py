"""Figures drawn from the tidy tables only (never from models), in PNG and PDF.

Every figure function takes rows of the tables (dicts of strings, as `tables.read_csv` returns
them) for one (model, dataset) and an output stem; it writes `<stem>.png` and `<stem>.pdf` and
returns the figure's axes count. One colour per method everywhere (`METHOD_COLOURS`); solid
lines for unlearned models, dashed for relearned ones, dotted for the base model.
"""

from __future__ import annotations

import math
import os
import zlib
from pathlib import Path
from typing import Callable, Iterable

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from .config import STAGES  # noqa: E402

STAGE_STYLE = {"base": ":", "unlearned": "-", "relearned": "--"}
METHOD_ORDER = ("ga", "ga_gd", "ga_kl", "npo", "npo_gd", "npo_kl", "rlabel", "simnpo", "finetune")
_PALETTE = plt.get_cmap("tab10").colors
METHOD_COLOURS = {method: _PALETTE[i] for i, method in enumerate(METHOD_ORDER)}
REGIME_COLOURS = {"reversible, retain kept": "#4daf4a", "reversible, catastrophic": "#a6d96a",
                  "irreversible, retain kept": "#e41a1c", "irreversible, catastrophic": "#984ea3",
                  "not forgotten": "#bdbdbd", "no memorisation gap": "#fdd0a2", "undetermined": "#ffffff"}
# The two views of reversibility (metrics.regime): the paper's, on the raw relearned F.Acc, and
# the controlled one, on the unlearned F.Acc plus the controlled recovery.
REGIME_VIEWS = {"regime_paper": "paper: raw relearned F.Acc",
                "regime_controlled": "controlled: minus the control's gain"}


def colour(method: str):
    """A method's colour, the same in every figure job: an unlisted method's comes from a checksum
    of its name (Python's own hash() of a string changes from one process to the next)."""
    return METHOD_COLOURS.get(method, _PALETTE[zlib.crc32(method.encode()) % len(_PALETTE)])


def number(value) -> float:
    return math.nan if value in ("", None) else float(value)


def methods_of(rows: Iterable[dict]) -> list[str]:
    present = {r["method"] for r in rows if r.get("method")}
    return sorted(present, key=lambda m: (METHOD_ORDER.index(m) if m in METHOD_ORDER else len(METHOD_ORDER), m))


def values_of(rows: Iterable[dict], key: str) -> list[str]:
    return sorted({r[key] for r in rows if r.get(key) not in ("", None)}, key=float)


def save(fig, stem: str | os.PathLike) -> int:
    from .io import atomic_path

    for suffix in ("png", "pdf"):
        out = Path(f"{stem}.{suffix}")
        out.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(out) as tmp:
            fig.savefig(tmp, format=suffix, dpi=130, bbox_inches="tight")
    count = len(fig.axes)
    plt.close(fig)
    return count


def _panels(n_rows: int, n_cols: int, width: float = 4.0, height: float = 3.0, **kwargs):
    fig, axes = plt.subplots(n_rows, n_cols, squeeze=False, figsize=(width * n_cols, height * n_rows), **kwargs)
    return fig, axes


def _legend(fig, axes) -> None:
    handles, labels = {}, []
    for ax in np.ravel(axes):
        for handle, label in zip(*ax.get_legend_handles_labels()):
            if label not in handles:
                handles[label] = handle
                labels.append(label)
    if labels:
        fig.legend([handles[label] for label in labels], labels, loc="upper center", ncol=min(5, len(labels)),
                   fontsize=8, bbox_to_anchor=(0.5, 0.0), frameon=False)


def _empty(stem: str | os.PathLike, title: str, message: str) -> int:
    fig, ax = plt.subplots(figsize=(5, 2))
    ax.axis("off")
    ax.text(0.5, 0.5, message, ha="center", va="center", fontsize=10)
    ax.set_title(title)
    return save(fig, stem)


def _cell_panels(rows: list[dict], stem, draw_panel: Callable, ylabel: str, title: str, xlabel: str = "",
                 ylim: tuple[float, float] | None = None, width: float = 4.0) -> int:
    """The frame most figures share: one panel per (N, lr) of unlearning, drawn by
    `draw_panel(ax, panel_rows)`, with labels, a legend below and the title above."""
    ns, lrs = values_of(rows, "n_requests"), values_of(rows, "learning_rate")
    fig, axes = _panels(len(ns), len(lrs), width=width, sharey=True)
    for i, n in enumerate(ns):
        for j, lr in enumerate(lrs):
            ax = axes[i][j]
            draw_panel(ax, [r for r in rows if r["n_requests"] == n and r["learning_rate"] == lr])
            if ylim:
                ax.set_ylim(*ylim)
            ax.set_title(f"N = {n}, lr = {lr}", fontsize=9)
            ax.set_ylabel(ylabel if j == 0 else "")
            ax.set_xlabel(xlabel if i == len(ns) - 1 else "")
            ax.grid(alpha=0.3)
    _legend(fig, axes)
    fig.suptitle(title)
    fig.tight_layout()
    return save(fig, stem)


def _short_layer(name: str) -> str:
    """model.layers.3 -> L3, model.embed_tokens -> emb, model.norm -> norm."""
    last = name.split(".")[-1]
    return f"L{last}" if last.isdigit() else {"embed_tokens": "emb", "norm": "norm"}.get(last, last)


# --------------------------------------------------------------------------- token metrics


def accuracy_trajectory(metrics: list[dict], stem, title: str = "") -> int:
    """F.Acc (solid) and R.Acc (dashed) from base to unlearned to relearned, per method; one
    panel per (N, lr): forgetting that relearning undoes climbs back up (the paper's Figure 1)."""
    def draw(ax, panel):
        for method in methods_of(panel):
            by_stage = {r["stage"]: r for r in panel if r["method"] == method}
            for column, style, label in (("forget_accuracy", "-", "F.Acc"), ("retain_accuracy", "--", "R.Acc")):
                ys = [number(by_stage[s][column]) if s in by_stage else math.nan for s in STAGES]
                ax.plot(range(3), ys, style, marker="o", color=colour(method), label=f"{method} {label}")
        ax.set_xticks(range(3), STAGES)

    return _cell_panels(metrics, stem, draw, "token accuracy", ylim=(0, 1), title=title or
                        "Forget (solid) and retain (dashed) accuracy through unlearning and relearning")


STAGE_COLOURS = {"base": "#999999", "unlearned": "#d95f02", "relearned": "#1b9e77"}


def _stage_bars(ax, rows: list[dict], cells: list[tuple], key: Callable[[dict], tuple], column: str,
                tick_labels: list[str], title: str) -> None:
    """Grouped bars, one group per cell and one bar per stage, of `column` (0 to 1)."""
    width = 0.8 / len(STAGES)
    for k, stage in enumerate(STAGES):
        values = [number(next((r[column] for r in rows if r["stage"] == stage and key(r) == cell), ""))
                  for cell in cells]
        ax.bar(np.arange(len(cells)) + (k - 1) * width, values, width, label=stage, color=STAGE_COLOURS[stage])
    ax.set_xticks(range(len(cells)), tick_labels, fontsize=7, rotation=90)
    ax.set_title(title, fontsize=10)
    ax.set_ylim(0, 1)
    ax.grid(axis="y", alpha=0.3)


def single_unlearning(metrics: list[dict], stem, title: str = "") -> int:
    """N = 1: LOSS-attack AUC, F.Acc and R.Acc of each method x learning rate, per stage."""
    rows = [r for r in metrics if r["n_requests"] == "1"]
    if not rows:
        return _empty(stem, title or "Single unlearning", "no N = 1 cell in the grid")
    cells = sorted({(r["method"], r["learning_rate"]) for r in rows},
                   key=lambda c: (methods_of([{"method": c[0]}] + rows).index(c[0]), float(c[1])))
    measures = (("mia_loss_auc", "LOSS-attack AUC"), ("forget_accuracy", "F.Acc"), ("retain_accuracy", "R.Acc"))
    fig, axes = _panels(1, len(measures), width=max(4.0, 0.55 * len(cells) + 1.5), height=3.4)
    for ax, (column, label) in zip(axes[0], measures):
        _stage_bars(ax, rows, cells, lambda r: (r["method"], r["learning_rate"]), column,
                    [f"{m}\n{lr}" for m, lr in cells], label)
    axes[0][0].legend(fontsize=8)
    fig.suptitle(title or "Single unlearning (N = 1)")
    fig.tight_layout()
    return save(fig, stem)


def continual_heatmaps(metrics: list[dict], stem, title: str = "") -> int:
    """Per method, N x learning-rate heatmaps of F.Acc and R.Acc after unlearning and relearning."""
    methods = methods_of(metrics)
    ns, lrs = values_of(metrics, "n_requests"), values_of(metrics, "learning_rate")
    columns = [("forget_accuracy", "unlearned"), ("forget_accuracy", "relearned"),
               ("retain_accuracy", "unlearned"), ("retain_accuracy", "relearned")]
    fig, axes = _panels(len(methods), len(columns), width=0.7 * len(lrs) + 1.8, height=0.45 * len(ns) + 1.3)
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
                    ax.text(b, a, f"{value:.2f}", ha="center", va="center", fontsize=7,
                            color="white" if value < 0.6 else "black")
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


def request_curves(requests: list[dict], stem, title: str = "") -> int:
    """Accuracy after each request: on everything requested so far (solid) and on retain samples
    (dashed), per method; one panel per (N, lr) with N > 1."""
    rows = [r for r in requests if int(r["n_requests"]) > 1]
    if not rows:
        return _empty(stem, title or "Continual unlearning", "no cell with more than one request")
    ns, lrs = values_of(rows, "n_requests"), values_of(rows, "learning_rate")
    fig, axes = _panels(len(ns), len(lrs), sharey=True)
    for i, n in enumerate(ns):
        for j, lr in enumerate(lrs):
            ax = axes[i][j]
            panel = [r for r in rows if r["n_requests"] == n and r["learning_rate"] == lr]
            for method in methods_of(panel):
                points = sorted(((int(r["request"]), number(r["forget_seen_accuracy"]), number(r["retain_accuracy"]))
                                 for r in panel if r["method"] == method))
                xs = [p[0] for p in points]
                ax.plot(xs, [p[1] for p in points], "-", marker="o", markersize=3, color=colour(method),
                        label=f"{method} forget")
                ax.plot(xs, [p[2] for p in points], "--", color=colour(method), label=f"{method} retain")
            ax.set_ylim(0, 1)
            ax.set_title(f"N = {n}, lr = {lr}", fontsize=9)
            ax.set_xlabel("request")
            ax.set_ylabel("token accuracy" if j == 0 else "")
            ax.grid(alpha=0.3)
    _legend(fig, axes)
    fig.suptitle(title or "Accuracy after each unlearning request")
    fig.tight_layout()
    return save(fig, stem)


def relearning_curves(relearning: list[dict], stem, title: str = "") -> int:
    """Forget accuracy (solid) and retain accuracy (dashed) against relearning steps."""
    def draw(ax, panel):
        for method in methods_of(panel):
            points = sorted((int(r["step"]), number(r["forget_accuracy"]), number(r["retain_accuracy"]))
                            for r in panel if r["method"] == method)
            xs = [p[0] for p in points]
            ax.plot(xs, [p[1] for p in points], "-", marker="o", markersize=3, color=colour(method),
                    label=f"{method} forget")
            ax.plot(xs, [p[2] for p in points], "--", color=colour(method), label=f"{method} retain")

    return _cell_panels(relearning, stem, draw, "token accuracy", title=title or "Relearning efficiency",
                        xlabel="relearning step", ylim=(0, 1))


def benchmark_accuracy(benchmarks: list[dict], stem, title: str = "") -> int:
    """Accuracy of greedy answers per cell, one panel per benchmark, for base, unlearned and relearned."""
    names = list(dict.fromkeys(r["benchmark"] for r in benchmarks))
    if not names:
        return _empty(stem, title or "Benchmark accuracy", "no benchmark in this experiment")
    cells = sorted({(r["method"], r["n_requests"], r["learning_rate"]) for r in benchmarks},
                   key=lambda c: (methods_of(benchmarks).index(c[0]), int(c[1]), float(c[2])))
    fig, axes = _panels(1, len(names), width=max(4.0, 0.5 * len(cells) + 1.5), height=3.4)
    for ax, name in zip(axes[0], names):
        rows = [r for r in benchmarks if r["benchmark"] == name]
        _stage_bars(ax, rows, cells, lambda r: (r["method"], r["n_requests"], r["learning_rate"]), "accuracy",
                    [f"{m} N={n}\nlr={lr}" for m, n, lr in cells], f"{name} ({rows[0]['problems']} problems)")
    axes[0][0].legend(fontsize=8)
    fig.suptitle(title or "Benchmark accuracy")
    fig.tight_layout()
    return save(fig, stem)


def regime_map(regimes: list[dict], stem, title: str = "") -> int:
    """The regime of every cell in both views, one panel each: methods down, (N, lr) across;
    cells whose forget accuracy fell below the never-seen level are marked damaged."""
    methods = methods_of(regimes)
    columns = sorted({(r["n_requests"], r["learning_rate"]) for r in regimes}, key=lambda c: (int(c[0]), float(c[1])))
    fig, axes = _panels(1, len(REGIME_VIEWS), width=1.3 * len(columns) + 2.5, height=0.45 * len(methods) + 1.6)
    for ax, (view, label) in zip(axes[0], REGIME_VIEWS.items()):
        _regime_panel(ax, regimes, view, methods, columns)
        ax.set_title(label, fontsize=9)
    fig.suptitle(title or "Regimes: reversible or irreversible forgetting, catastrophic or not")
    fig.tight_layout()
    return save(fig, stem)


def _regime_panel(ax, regimes: list[dict], view: str, methods: list[str], columns: list[tuple]) -> None:
    names = list(REGIME_COLOURS)
    grid = np.full((len(methods), len(columns)), np.nan)
    for r in regimes:
        i, j = methods.index(r["method"]), columns.index((r["n_requests"], r["learning_rate"]))
        grid[i, j] = names.index(r[view])
        text = r[view].replace(", ", "\n") + ("\n(damaged)" if r["damaged"] == "True" else "")
        ax.text(j, i, text, ha="center", va="center", fontsize=6)
    cmap = matplotlib.colors.ListedColormap([REGIME_COLOURS[n] for n in names])
    ax.imshow(grid, cmap=cmap, vmin=-0.5, vmax=len(names) - 0.5, aspect="auto")
    ax.set_xticks(range(len(columns)), [f"N={n}\nlr={lr}" for n, lr in columns], fontsize=8)
    ax.set_yticks(range(len(methods)), methods, fontsize=8)


# --------------------------------------------------------------------------- representations


def per_layer(representations: list[dict], stem, column: str, ylabel: str, split: str = "all",
              title: str = "") -> int:
    """A per-layer diagnostic against the base model: one panel per (N, lr), one colour per
    method, unlearned solid and relearned dashed."""
    rows = [r for r in representations if r["split"] == split]
    ns, lrs = values_of(rows, "n_requests"), values_of(rows, "learning_rate")
    fig, axes = _panels(len(ns), len(lrs), sharey=True)
    for i, n in enumerate(ns):
        for j, lr in enumerate(lrs):
            ax = axes[i][j]
            panel = [r for r in rows if r["n_requests"] == n and r["learning_rate"] == lr]
            names = {}
            for method in methods_of(panel):
                for stage in ("unlearned", "relearned"):
                    line = sorted((int(r["layer_index"]), number(r[column]), r["layer"]) for r in panel
                                  if r["method"] == method and r["stage"] == stage)
                    names.update({k: name for k, _, name in line})
                    ax.plot([k for k, _, _ in line], [v for _, v, _ in line], STAGE_STYLE[stage], marker="o",
                            markersize=3, color=colour(method), label=f"{method} {stage}")
            ax.set_xticks(sorted(names), [_short_layer(names[k]) for k in sorted(names)], rotation=45, fontsize=7)
            ax.set_ylim(0, 1.02)
            ax.set_title(f"N = {n}, lr = {lr}", fontsize=9)
            ax.set_ylabel(ylabel if j == 0 else "")
            ax.set_xlabel("layer" if i == len(ns) - 1 else "")
            ax.grid(alpha=0.3)
    _legend(fig, axes)
    fig.suptitle(title)
    fig.tight_layout()
    return save(fig, stem)


def cka_per_layer(representations: list[dict], stem, title: str = "") -> int:
    return per_layer(representations, stem, "cka", "linear CKA vs base",
                     title=title or "Per-layer linear CKA against the base model (all samples)")


def pca_similarity_per_layer(representations: list[dict], stem, title: str = "") -> int:
    return per_layer(representations, stem, "pc1_cosine", "|cos(PC1 base, PC1)|",
                     title=title or "Per-layer PCA similarity to the base model (all samples)")


def pca_shift_scatter(representations: list[dict], stem, split: str = "all", title: str = "") -> int:
    """Per layer, the updated centroid in the base's (PC1, PC2) coordinates, normalised by the
    base spread: the base sits at the origin, lines join it to the unlearned (o) and relearned
    (x) points; colour marks the layer. One panel per (method, lr) at the largest N."""
    rows = [r for r in representations if r["split"] == split]
    if not rows:
        return _empty(stem, "PCA shift", "no diagnostics")
    largest = values_of(rows, "n_requests")[-1]
    rows = [r for r in rows if r["n_requests"] == largest]
    panels = sorted({(r["method"], r["learning_rate"]) for r in rows},
                    key=lambda p: (methods_of(rows).index(p[0]), float(p[1])))
    n_cols = min(4, len(panels))
    fig, axes = _panels(math.ceil(len(panels) / n_cols), n_cols, width=3.6, height=3.6, layout="constrained")
    n_layers = 1 + max(int(r["layer_index"]) for r in rows)
    cmap = plt.get_cmap("viridis")
    for ax, (method, lr) in zip(np.ravel(axes), panels):
        for stage, marker in (("unlearned", "o"), ("relearned", "x")):
            for r in rows:
                if r["method"] == method and r["learning_rate"] == lr and r["stage"] == stage:
                    x, y = number(r["normalised_pc1"]), number(r["normalised_pc2"])
                    shade = cmap(int(r["layer_index"]) / max(1, n_layers - 1))
                    ax.plot([0, x], [0, y], "-", color=shade, alpha=0.4, linewidth=0.8)
                    ax.plot([x], [y], marker, color=shade, markersize=5)
        ax.plot([0], [0], "k*", markersize=8)
        ax.axhline(0, color="grey", linewidth=0.5)
        ax.axvline(0, color="grey", linewidth=0.5)
        ax.set_title(f"{method}, N = {largest}, lr = {lr}", fontsize=8)
        ax.set_xlabel("shift along base PC1 (base sd)", fontsize=7)
        ax.set_ylabel("base PC2 coordinate (base sd)", fontsize=7)
    for ax in np.ravel(axes)[len(panels):]:
        ax.axis("off")
    fig.colorbar(matplotlib.cm.ScalarMappable(norm=matplotlib.colors.Normalize(0, n_layers - 1), cmap=cmap),
                 ax=axes, fraction=0.02, label="layer index")
    fig.suptitle(title or "PCA shift per layer: o unlearned, x relearned, * base")
    return save(fig, stem)


def fisher_histograms(histograms: list[dict], fisher: list[dict], stem, layer: str | None = None,
                      title: str = "") -> int:
    """Fisher diagonal histograms of one decoder layer (the last by default) on log-spaced bins,
    on the cell's forgotten samples, as shares of the layer's parameters: base (dotted),
    unlearned (solid), relearned (dashed); one panel per (method, lr) at the largest N. The share
    below the lowest bin (fisher.csv's `below_range`) is drawn as one more bar left of the range
    and given in the legend: an update that pushes weights' Fisher below it moves them off the
    histogram."""
    if not histograms:
        return _empty(stem, "Fisher information", "no Fisher information was computed (capture.fisher_samples: 0)")
    layers = sorted({r["layer"] for r in histograms}, key=lambda name: int(name.split(".")[-1]))
    layer = layer or layers[-1]
    largest = values_of([r for r in histograms if r["stage"] != "base"], "n_requests")[-1]
    rows = [r for r in histograms if r["layer"] == layer and r["n_requests"] == largest]
    base = [r for r in rows if r["stage"] == "base"]
    cells = [r for r in rows if r["stage"] != "base"]
    below = {(r["method"], r["learning_rate"], r["stage"]): r for r in fisher
             if r["sample_set"] == "forget" and r["layer"] == layer and r["n_requests"] == largest}
    panels = sorted({(r["method"], r["learning_rate"]) for r in cells},
                    key=lambda p: (methods_of(cells).index(p[0]), float(p[1])))
    n_cols = min(4, len(panels))
    fig, axes = _panels(math.ceil(len(panels) / n_cols), n_cols, width=3.4, height=2.8, sharey=True)
    lowest = min(number(r["bin_low"]) for r in rows)
    for ax, (method, lr) in zip(np.ravel(axes), panels):
        ax.axvspan(lowest / 10 ** BELOW_RANGE_DECADES, lowest, color="grey", alpha=0.15, linewidth=0)
        unlearned = below.get((method, lr, "unlearned"), {})
        _fisher_stairs(ax, base, number(unlearned.get("below_range_base")), ":", "base", "black")
        for stage in ("unlearned", "relearned"):
            part = [r for r in cells if (r["method"], r["learning_rate"], r["stage"]) == (method, lr, stage)]
            _fisher_stairs(ax, part, number(below.get((method, lr, stage), {}).get("below_range")),
                           STAGE_STYLE[stage], stage, colour(method))
        ax.set_xscale("log")
        ax.set_title(f"{method}, N = {largest}, lr = {lr}", fontsize=8)
        ax.set_xlabel("Fisher value", fontsize=7)
        ax.set_ylabel("share of parameters", fontsize=7)
        ax.legend(fontsize=6)
    for ax in np.ravel(axes)[len(panels):]:
        ax.axis("off")
    fig.suptitle(title or f"Diagonal Fisher information of {layer}")
    fig.tight_layout()
    return save(fig, stem)


BELOW_RANGE_DECADES = 1.0   # the width the below-range bar is drawn with, left of the lowest bin


def _fisher_stairs(ax, part: list[dict], below: float, style: str, label: str, shade) -> None:
    """One histogram as shares of the layer's parameters, its below-range share first."""
    points = sorted((number(r["bin_low"]), number(r["bin_high"]), number(r["count"])) for r in part)
    if not points:
        return
    counts = np.array([p[2] for p in points])
    in_range = 1 - below if math.isfinite(below) else 1.0
    shares = counts / counts.sum() * in_range if counts.sum() > 0 else np.zeros_like(counts)
    edges = [p[0] for p in points] + [points[-1][1]]
    if math.isfinite(below):
        edges = [edges[0] / 10 ** BELOW_RANGE_DECADES] + edges
        shares = np.concatenate([[below], shares])
        label = f"{label} ({below:.0%} below {points[0][0]:.0e})"
    ax.stairs(shares, edges, linestyle=style, color=shade, label=label)


# --------------------------------------------------------------------------- reversal


def recovery_budgets(recovery: list[dict], stem, title: str = "") -> int:
    """Controlled recovery (solid) and raw forget gain (dashed) against the relearning budget,
    one line per method, one panel per (N, lr) of unlearning."""
    if not recovery:
        return _empty(stem, "Recovery against attack strength", "no relearning budgets")
    budgets = sorted({(r["relearn_learning_rate"], int(r["relearn_steps"])) for r in recovery},
                     key=lambda b: (float(b[0]), b[1]))

    def draw(ax, panel):
        for method in methods_of(panel):
            by_budget = {(r["relearn_learning_rate"], int(r["relearn_steps"])): r for r in panel
                         if r["method"] == method}
            for column, style, label in (("controlled_recovery", "-", "controlled"), ("forget_gain", "--", "raw")):
                ys = [number(by_budget[b][column]) if b in by_budget else math.nan for b in budgets]
                ax.plot(range(len(budgets)), ys, style, marker="o", color=colour(method), label=f"{method} {label}")
        ax.axhline(0, color="black", linewidth=0.6)
        ax.set_xticks(range(len(budgets)), [f"{steps} steps\nlr={rate}" for rate, steps in budgets], fontsize=7)

    return _cell_panels(recovery, stem, draw, "forget accuracy gain", xlabel="relearning budget",
                        width=max(4.0, 0.9 * len(budgets) + 1.5),
                        title=title or "Recovery against attack strength: controlled (solid) and raw (dashed)")


def quantization_reversal(quantization: list[dict], stem, title: str = "") -> int:
    """Per method, the forget-accuracy change under each quantization width beside the
    controlled relearning recovery; one panel per (N, lr)."""
    if not quantization:
        return _empty(stem, "Quantization reversal", "no quantization widths configured")
    widths = sorted({int(r["bits"]) for r in quantization}, reverse=True)
    bars = [f"int{b}" for b in widths] + ["relearning"]

    def draw(ax, panel):
        methods = methods_of(panel)
        width = 0.8 / max(1, len(methods))
        for k, method in enumerate(methods):
            rows = {int(r["bits"]): r for r in panel if r["method"] == method}
            values = [number(rows[b]["forget_gain"]) if b in rows else math.nan for b in widths]
            values.append(number(next(iter(rows.values()))["controlled_recovery"]) if rows else math.nan)
            ax.bar(np.arange(len(bars)) + (k - (len(methods) - 1) / 2) * width, values, width,
                   color=colour(method), label=method)
        ax.axhline(0, color="black", linewidth=0.6)
        ax.set_xticks(range(len(bars)), bars, fontsize=8)

    return _cell_panels(quantization, stem, draw, "forget accuracy gain", title=title or
                        "Forget accuracy regained by quantizing the unlearned model, and by relearning")


def prediction_scatter(cells: list[dict], prediction: list[dict], stem, title: str = "") -> int:
    """The controlled recovery share of the matched budget against each predictor, one panel per
    predictor; cells that forgot are filled, the others hollow. Each panel's title gives
    Spearman's rho with its bootstrap interval over the cells that forgot and over all cells,
    read from the prediction table (so the figure shows the table's numbers)."""
    from .tables import CELL_SETS, PREDICTION_TARGET, PREDICTORS

    if not cells:
        return _empty(stem, "Prediction of reversibility", "no cells")
    correlations = {(r["cell_set"], r["diagnostic"]): r for r in prediction}
    fig, axes = _panels(1, len(PREDICTORS), width=3.4, sharey=True)
    recovery = [number(r[PREDICTION_TARGET]) for r in cells]
    for ax, (name, label) in zip(axes[0], PREDICTORS.items()):
        values = [number(r[name]) for r in cells]
        for method in methods_of(cells):
            for forgotten in (True, False):
                picked = [k for k, r in enumerate(cells)
                          if r["method"] == method and (r["forgotten"] == "True") == forgotten]
                if not picked:
                    continue
                ax.scatter([values[k] for k in picked], [recovery[k] for k in picked], s=18,
                           edgecolors=colour(method), facecolors=colour(method) if forgotten else "none",
                           label=method if forgotten else f"{method} (not forgotten)")
        ax.set_title("\n".join(_rho_label(which, correlations[(which, name)]) for which in CELL_SETS), fontsize=8)
        ax.set_xlabel(label, fontsize=8)
        ax.axhline(0, color="black", linewidth=0.6)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("controlled recovery (share of the gap)")
    _legend(fig, axes)
    fig.suptitle(title or "Do the diagnostics of the unlearned model predict how much comes back?")
    fig.tight_layout()
    return save(fig, stem)


def _rho_label(cell_set: str, row: dict) -> str:
    return (f"{cell_set}: rho = {number(row['spearman']):.2f} [{number(row['low']):.2f}, {number(row['high']):.2f}], "
            f"{row['cells']} cells")


# --------------------------------------------------------------------------- registry
# name -> (function, the tables it reads, in the order of its arguments); the figures rule draws
# every one per (model, dataset).

FIGURES: dict[str, tuple[Callable[..., int], tuple[str, ...]]] = {
    "accuracy_trajectory": (accuracy_trajectory, ("metrics",)),
    "single_unlearning": (single_unlearning, ("metrics",)),
    "continual_heatmaps": (continual_heatmaps, ("metrics",)),
    "request_curves": (request_curves, ("requests",)),
    "relearning_curves": (relearning_curves, ("relearning",)),
    "regime_map": (regime_map, ("regimes",)),
    "cka_per_layer": (cka_per_layer, ("representations",)),
    "pca_similarity": (pca_similarity_per_layer, ("representations",)),
    "pca_shift": (pca_shift_scatter, ("representations",)),
    "fisher_histograms": (fisher_histograms, ("fisher_histograms", "fisher")),
    "recovery_budgets": (recovery_budgets, ("recovery",)),
    "quantization_reversal": (quantization_reversal, ("quantization",)),
    "prediction_scatter": (prediction_scatter, ("prediction_cells", "prediction")),
}


def draw_all(tables: dict[str, list[dict]], model: str, dataset: str, out_dir: str | os.PathLike) -> dict[str, int]:
    """Every figure of one (model, dataset) into `out_dir`; returns each figure's axes count."""
    counts = {}
    for name, (draw, names) in FIGURES.items():
        inputs = [[r for r in tables[table] if r["model"] == model and r["dataset"] == dataset] for table in names]
        counts[name] = draw(*inputs, Path(out_dir) / name)
    return counts
