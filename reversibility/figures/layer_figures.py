"""Figures of the representation diagnostics, layer by layer against the base model: linear
CKA, PCA similarity and shift, the diagonal Fisher information, the logit lens and the membership probe."""

from __future__ import annotations

import math

import matplotlib
import matplotlib.pyplot as plt
import numpy as np

from .frame import (
    STAGE_STYLE,
    band,
    cell_panels,
    colour,
    empty,
    grid_cell_panels,
    legend,
    method_rate_panels,
    methods_of,
    number,
    save,
    short_layer,
    values_of,
)

BELOW_RANGE_DECADES = 1.0  # the width the below-range bar is drawn with, left of the lowest bin
LENS_STAGE_COLOURS = {"base": "black", "unlearned": "tab:red", "relearned": "tab:blue"}
LENS_SPLIT_STYLE = {"forget": "-", "holdout": "--"}


def per_layer(representations: list[dict], stem, column: str, ylabel: str, split: str = "all", title: str = "") -> int:
    """A per-layer diagnostic against the base model: one panel per (N, lr), one colour per
    method, unlearned solid and relearned dashed; with several seeds, their mean and a band of
    their 95% interval."""

    def draw(ax, panel):
        names = {}
        for method in methods_of(panel):
            for stage in ("unlearned", "relearned"):
                rows = sorted(
                    (r for r in panel if r["method"] == method and r["stage"] == stage),
                    key=lambda r: int(r["layer_index"]),
                )
                xs = [int(r["layer_index"]) for r in rows]
                names.update({int(r["layer_index"]): r["layer"] for r in rows})
                band(ax, xs, rows, column, colour(method))
                ax.plot(
                    xs,
                    [number(r[column]) for r in rows],
                    STAGE_STYLE[stage],
                    marker="o",
                    markersize=3,
                    color=colour(method),
                    label=f"{method} {stage}",
                )
        ax.set_xticks(sorted(names), [short_layer(names[k]) for k in sorted(names)], rotation=45, fontsize=7)

    rows = [r for r in representations if r["split"] == split]
    return cell_panels(rows, stem, draw, ylabel, title=title, xlabel="layer", ylim=(0, 1.02))


def cka_per_layer(representations: list[dict], stem, title: str = "") -> int:
    return per_layer(
        representations,
        stem,
        "cka",
        "linear CKA vs base",
        title=title or "Per-layer linear CKA against the base model (all samples)",
    )


def pca_similarity_per_layer(representations: list[dict], stem, title: str = "") -> int:
    return per_layer(
        representations,
        stem,
        "pc1_cosine",
        "|cos(PC1 base, PC1)|",
        title=title or "Per-layer PCA similarity to the base model (all samples)",
    )


def pca_shift_scatter(representations: list[dict], stem, split: str = "all", title: str = "") -> int:
    """Per layer, the updated centroid in the base's (PC1, PC2) coordinates, normalised by the
    base spread: the base sits at the origin, lines join it to the unlearned (o) and relearned
    (x) points; colour marks the layer. One panel per (method, lr) at the largest N."""
    rows = [r for r in representations if r["split"] == split]
    if not rows:
        return empty(stem, "PCA shift", "no diagnostics")
    largest = values_of(rows, "n_requests")[-1]
    rows = [r for r in rows if r["n_requests"] == largest]
    fig, axes, cells = method_rate_panels(rows, width=3.6, height=3.6, layout="constrained")
    n_layers = 1 + max(int(r["layer_index"]) for r in rows)
    cmap = plt.get_cmap("viridis")
    for ax, (method, lr) in zip(np.ravel(axes), cells):
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
    fig.colorbar(
        matplotlib.cm.ScalarMappable(norm=matplotlib.colors.Normalize(0, n_layers - 1), cmap=cmap),
        ax=axes,
        fraction=0.02,
        label="layer index",
    )
    fig.suptitle(title or "PCA shift per layer: o unlearned, x relearned, * base")
    return save(fig, stem)


def fisher_histograms(
    histograms: list[dict], fisher: list[dict], stem, layer: str | None = None, title: str = ""
) -> int:
    """Fisher diagonal histograms of one decoder layer (the last by default) on log-spaced bins,
    on the cell's forgotten samples, as shares of the layer's parameters: base (dotted),
    unlearned (solid), relearned (dashed); one panel per (method, lr) at the largest N. The share
    below the lowest bin (fisher.csv's `below_range`) is drawn as one more bar left of the range
    and given in the legend: an update that pushes weights' Fisher below it moves them off the
    histogram."""
    if not histograms:
        return empty(stem, "Fisher information", "no Fisher information was computed (capture.fisher_samples: 0)")
    layers = sorted({r["layer"] for r in histograms}, key=lambda name: int(name.split(".")[-1]))
    layer = layer or layers[-1]
    largest = values_of([r for r in histograms if r["stage"] != "base"], "n_requests")[-1]
    rows = [r for r in histograms if r["layer"] == layer and r["n_requests"] == largest]
    base = [r for r in rows if r["stage"] == "base"]
    updated = [r for r in rows if r["stage"] != "base"]
    below = {
        (r["method"], r["learning_rate"], r["stage"]): r
        for r in fisher
        if r["sample_set"] == "forget" and r["layer"] == layer and r["n_requests"] == largest
    }
    fig, axes, cells = method_rate_panels(updated, width=3.4, height=2.8, sharey=True)
    lowest = min(number(r["bin_low"]) for r in rows)
    for ax, (method, lr) in zip(np.ravel(axes), cells):
        ax.axvspan(lowest / 10**BELOW_RANGE_DECADES, lowest, color="grey", alpha=0.15, linewidth=0)
        unlearned = below.get((method, lr, "unlearned"), {})
        _fisher_stairs(ax, base, number(unlearned.get("below_range_base")), ":", "base", "black")
        for stage in ("unlearned", "relearned"):
            part = [r for r in updated if (r["method"], r["learning_rate"], r["stage"]) == (method, lr, stage)]
            _fisher_stairs(
                ax,
                part,
                number(below.get((method, lr, stage), {}).get("below_range")),
                STAGE_STYLE[stage],
                stage,
                colour(method),
            )
        ax.set_xscale("log")
        ax.set_title(f"{method}, N = {largest}, lr = {lr}", fontsize=8)
        ax.set_xlabel("Fisher value", fontsize=7)
        ax.set_ylabel("share of parameters", fontsize=7)
        ax.legend(fontsize=6)
    fig.suptitle(title or f"Diagonal Fisher information of {layer}")
    fig.tight_layout()
    return save(fig, stem)


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
        edges = [edges[0] / 10**BELOW_RANGE_DECADES] + edges
        shares = np.concatenate([[below], shares])
        label = f"{label} ({below:.0%} below {points[0][0]:.0e})"
    ax.stairs(shares, edges, linestyle=style, color=shade, label=label)


def membership_probe(probe: list[dict], stem, title: str = "") -> int:
    """The membership probe's AUC per layer, one panel per cell (method, N, lr), four to a row:
    base (dotted, black), unlearned (solid) and relearned (dashed) in the method's colour; right of
    the last layer, a horizontal mark at each stage's output-level LOSS attack AUC in the same
    style, and a grey line at chance (0.5)."""
    if not probe:
        return empty(stem, "Membership probe", "no membership probe (diagnostics.membership_probe.enabled: false)")
    updated = [r for r in probe if r["stage"] != "base"]
    fig, axes, cells = grid_cell_panels(updated, width=3.6, height=2.8, sharey=True)
    for ax, (method, n, lr) in zip(np.ravel(axes), cells):
        names: dict[int, str] = {}
        lines = [("base", [r for r in probe if r["stage"] == "base" and r["n_requests"] == n], "black")]
        for stage in ("unlearned", "relearned"):
            part = [
                r
                for r in updated
                if (r["method"], r["n_requests"], r["learning_rate"], r["stage"]) == (method, n, lr, stage)
            ]
            lines.append((stage, part, colour(method)))
        output_at = 1 + max(int(r["layer_index"]) for _, part, _ in lines for r in part)
        for stage, part, shade in lines:
            part = sorted(part, key=lambda r: int(r["layer_index"]))
            names.update({int(r["layer_index"]): r["layer"] for r in part})
            xs = [int(r["layer_index"]) for r in part]
            ax.plot(
                xs,
                [number(r["probe_auc"]) for r in part],
                STAGE_STYLE[stage],
                marker="o",
                markersize=3,
                color=shade,
                label=f"{stage} probe" if stage == "base" else f"{method} {stage} probe",
            )
            band(ax, xs, part, "probe_auc", shade)
            output = number(part[0]["output_mia_loss_auc"]) if part else math.nan
            ax.hlines(
                output, output_at - 0.35, output_at + 0.35, colors=[shade], linestyles=STAGE_STYLE[stage], linewidth=2
            )
        ax.axhline(0.5, color="grey", linewidth=0.6)
        ticks = sorted(names)
        ax.set_xticks(
            [*ticks, output_at], [*(short_layer(names[k]) for k in ticks), "output\nMIA"], rotation=45, fontsize=7
        )
        ax.set_ylim(0, 1.02)
        ax.set_title(f"{method}, N = {n}, lr = {lr}", fontsize=8)
        ax.set_ylabel("AUC", fontsize=7)
        ax.grid(alpha=0.3)
    legend(fig, axes)
    fig.suptitle(title or "Membership probe per layer (forget vs holdout) and the output-level LOSS attack (right)")
    fig.tight_layout()
    return save(fig, stem)


def logit_lens(lens: list[dict], stem, column: str = "accuracy", title: str = "") -> int:
    """The logit lens per layer: one panel per grid cell (method, N, lr), one colour per stage
    (base, unlearned, relearned), the cell's forget set solid and the holdout dashed."""
    rows = [r for r in lens if r["split"] in LENS_SPLIT_STYLE]
    if not rows:
        return empty(stem, "Logit lens", "no logit lens was captured (capture.logit_lens: false)")
    fig, axes, cells = grid_cell_panels(rows, width=3.6, height=2.9, sharey=True)
    names = {int(r["layer_index"]): r["layer"] for r in rows}
    for ax, (method, n, lr) in zip(np.ravel(axes), cells):
        panel = [r for r in rows if (r["method"], r["n_requests"], r["learning_rate"]) == (method, n, lr)]
        for stage, shade in LENS_STAGE_COLOURS.items():
            for split, style in LENS_SPLIT_STYLE.items():
                line = sorted(
                    (r for r in panel if (r["stage"], r["split"]) == (stage, split)),
                    key=lambda r: int(r["layer_index"]),
                )
                if line:
                    xs = [int(r["layer_index"]) for r in line]
                    ys = [number(r[column]) for r in line]
                    ax.plot(xs, ys, style, marker="o", markersize=3, color=shade, label=f"{stage}, {split}")
                    band(ax, xs, line, column, shade)
        ax.set_xticks(sorted(names), [short_layer(names[k]) for k in sorted(names)], rotation=45, fontsize=7)
        ax.set_title(f"{method}, N = {n}, lr = {lr}", fontsize=8)
        ax.set_ylabel("target accuracy of the readout" if column == "accuracy" else column, fontsize=7)
        if column == "accuracy":
            ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
    legend(fig, axes)
    fig.suptitle(title or "Logit lens: forget-set tokens readable layer by layer (dashed: holdout)")
    fig.tight_layout()
    return save(fig, stem)
