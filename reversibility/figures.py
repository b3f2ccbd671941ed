"""Figures drawn from the tidy tables only (never from models), in PNG and PDF.

One colour per method everywhere; solid lines for unlearned models, dashed for relearned ones.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

STAGE_STYLE = {"unlearned": "-", "relearned": "--"}
STAGE_ORDER = ("base", "unlearned", "relearned")


def method_colours(methods: Sequence[str]) -> dict[str, tuple]:
    palette = plt.get_cmap("tab10")
    return {method: palette(i % 10) for i, method in enumerate(sorted(methods))}


def _number(value: str) -> float:
    return float(value) if value not in ("", None) else math.nan


def _save(fig, out_png: str | os.PathLike, out_pdf: str | os.PathLike) -> None:
    from .io import atomic_path

    for out in (out_png, out_pdf):
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(out) as tmp:
            fig.savefig(tmp, format=Path(out).suffix[1:], dpi=150, bbox_inches="tight")
    plt.close(fig)


def _sorted_unique(rows, key: str, numeric: bool = True) -> list[str]:
    values = {row[key] for row in rows}
    return sorted(values, key=float) if numeric else sorted(values)


def cka_per_layer(rows: list[dict], out_png, out_pdf, split: str = "all", title: str = "") -> None:
    """Per-layer linear CKA against the base model: one panel per (N, lr), one colour per method."""
    rows = [r for r in rows if r["split"] == split]
    n_values, lr_values = _sorted_unique(rows, "n_requests"), _sorted_unique(rows, "learning_rate")
    colours = method_colours({r["method"] for r in rows})
    fig, axes = plt.subplots(len(n_values), len(lr_values), squeeze=False, sharey=True,
                             figsize=(4.2 * len(lr_values), 3.2 * len(n_values)))
    for i, n in enumerate(n_values):
        for j, lr in enumerate(lr_values):
            ax = axes[i][j]
            panel = [r for r in rows if r["n_requests"] == n and r["learning_rate"] == lr]
            layer_names = {}
            for method in sorted({r["method"] for r in panel}):
                for stage, style in STAGE_STYLE.items():
                    line = sorted((int(r["layer_index"]), _number(r["cka"]), r["layer"]) for r in panel
                                  if r["method"] == method and r["stage"] == stage)
                    if not line:
                        continue
                    layer_names.update({k: name for k, _, name in line})
                    ax.plot([k for k, _, _ in line], [v for _, v, _ in line], style, marker="o",
                            markersize=3, color=colours[method], label=f"{method} {stage}")
            ticks = sorted(layer_names)
            ax.set_xticks(ticks, [_short_layer(layer_names[k]) for k in ticks], rotation=45, fontsize=7)
            ax.set_ylim(0, 1.02)
            ax.set_title(f"N = {n}, lr = {lr}", fontsize=9)
            ax.grid(alpha=0.3)
            if j == 0:
                ax.set_ylabel("linear CKA vs base")
            if i == len(n_values) - 1:
                ax.set_xlabel("layer")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(4, len(labels)), fontsize=8,
               bbox_to_anchor=(0.5, -0.02 - 0.03 * math.ceil(len(labels) / 4)))
    fig.suptitle(title or f"Per-layer CKA against the base model ({split} samples)")
    fig.tight_layout()
    _save(fig, out_png, out_pdf)


def _short_layer(name: str) -> str:
    """model.layers.3 -> L3, model.embed_tokens -> emb, model.norm -> norm."""
    last = name.split(".")
    if last[-1].isdigit():
        return f"L{last[-1]}"
    return {"embed_tokens": "emb", "norm": "norm"}.get(last[-1], last[-1])


def accuracy_table(rows: list[dict], out_png, out_pdf, title: str = "") -> None:
    """Forget and retain accuracy of base, unlearned and relearned models, one row per cell."""
    cells = sorted({(r["method"], r["n_requests"], r["learning_rate"]) for r in rows},
                   key=lambda c: (c[0], int(c[1]), float(c[2])))
    measures = [("forget_accuracy", "F.Acc"), ("retain_accuracy", "R.Acc")]
    values = np.full((len(cells), len(measures) * len(STAGE_ORDER)), np.nan)
    for row in rows:
        i = cells.index((row["method"], row["n_requests"], row["learning_rate"]))
        for m, (column, _) in enumerate(measures):
            values[i, m * len(STAGE_ORDER) + STAGE_ORDER.index(row["stage"])] = _number(row[column])
    fig, ax = plt.subplots(figsize=(1.1 * values.shape[1] + 2.5, 0.42 * len(cells) + 1.6))
    image = ax.imshow(values, cmap="viridis", vmin=0, vmax=1, aspect="auto")
    for (i, j), value in np.ndenumerate(values):
        text = "n/a" if math.isnan(value) else f"{value:.2f}"
        ax.text(j, i, text, ha="center", va="center", fontsize=8,
                color="white" if math.isnan(value) or value < 0.6 else "black")
    ax.set_xticks(range(values.shape[1]),
                  [f"{label}\n{stage}" for _, label in measures for stage in STAGE_ORDER], fontsize=8)
    ax.set_yticks(range(len(cells)), [f"{m}  N={n}  lr={lr}" for m, n, lr in cells], fontsize=8)
    ax.xaxis.tick_top()
    fig.colorbar(image, ax=ax, label="token accuracy", fraction=0.04)
    ax.set_title(title or "Forget (F.Acc) and retain (R.Acc) token accuracy", pad=28)
    fig.tight_layout()
    _save(fig, out_png, out_pdf)
