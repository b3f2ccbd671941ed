"""What every figure shares: the colours and line styles, reading the tables' strings, the panel
grids and legends, and saving as PNG and PDF.

One colour per method everywhere, in the order the methods are registered (methods.METHODS);
solid lines for unlearned models, dashed for relearned ones, dotted for the base model.
"""

from __future__ import annotations

import math
import os
import zlib
from pathlib import Path
from typing import Callable, Iterable, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from ..io import atomic_path  # noqa: E402
from ..methods import METHODS  # noqa: E402

STAGE_STYLE = {"base": ":", "unlearned": "-", "relearned": "--"}
METHOD_ORDER = tuple(METHODS)
_PALETTE = plt.get_cmap("tab10").colors
METHOD_COLOURS = {method: _PALETTE[i % len(_PALETTE)] for i, method in enumerate(METHOD_ORDER)}


def colour(method: str):
    """A method's colour, the same in every figure job: an unlisted method's comes from a checksum
    of its name (Python's own hash() of a string changes from one process to the next)."""
    return METHOD_COLOURS.get(method, _PALETTE[zlib.crc32(method.encode()) % len(_PALETTE)])


def method_rank(method: str) -> tuple[int, str]:
    """Where a method sorts: registered ones in registry order, then the rest by name."""
    return (METHOD_ORDER.index(method) if method in METHOD_ORDER else len(METHOD_ORDER), method)


def number(value) -> float:
    return math.nan if value in ("", None) else float(value)


def methods_of(rows: Iterable[dict]) -> list[str]:
    return sorted({r["method"] for r in rows if r.get("method")}, key=method_rank)


def _interval(rows: list[dict | None], columns: Sequence[str]) -> tuple[list[float], list[float]]:
    """Each row's interval over seeds of its column (`<column>_low`/`_high`, from tables merged
    over seeds); NaN where a row has none."""
    low = [number(r.get(f"{c}_low")) if r else math.nan for r, c in zip(rows, columns)]
    high = [number(r.get(f"{c}_high")) if r else math.nan for r, c in zip(rows, columns)]
    return low, high


def band(ax, xs, rows: list[dict | None], column: str, color, alpha: float = 0.15) -> None:
    """The interval over seeds of `column` around a line through `xs` (one row per x, None where
    none), where the rows carry one."""
    low, high = _interval(rows, [column] * len(rows))
    if any(math.isfinite(value) for value in low):
        ax.fill_between(xs, low, high, color=color, alpha=alpha, linewidth=0)


def error_bars(rows: list[dict | None], column: str | Sequence[str]) -> np.ndarray | None:
    """Distances below and above each row's `column` (or each row's own of a list of columns) to
    its interval over seeds (for `yerr`), or None when no row has one."""
    columns = [column] * len(rows) if isinstance(column, str) else list(column)
    values = [number(r.get(c)) if r else math.nan for r, c in zip(rows, columns)]
    low, high = _interval(rows, columns)
    if not any(math.isfinite(value) for value in low):
        return None
    return np.nan_to_num(np.array([np.subtract(values, low), np.subtract(high, values)]))


def agreement_suffix(row: dict, column: str) -> str:
    """ " k/n" when the row was merged over n seeds, k of which give its `column`'s value."""
    agreeing = row.get(f"{column}_agreeing")
    return f" {agreeing}/{row['seeds']}" if agreeing not in (None, "") else ""


def values_of(rows: Iterable[dict], key: str) -> list[str]:
    return sorted({r[key] for r in rows if r.get(key) not in ("", None)}, key=float)


def save(fig, stem: str | os.PathLike) -> int:
    """Write `<stem>.png` and `<stem>.pdf`, close the figure and return its axes count."""
    for suffix in ("png", "pdf"):
        out = Path(f"{stem}.{suffix}")
        out.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(out) as tmp:
            fig.savefig(tmp, format=suffix, dpi=130, bbox_inches="tight")
    count = len(fig.axes)
    plt.close(fig)
    return count


def panels(n_rows: int, n_cols: int, width: float = 4.0, height: float = 3.0, **kwargs):
    """A figure of n_rows x n_cols panels of `width` x `height` inches each; axes always 2-D."""
    return plt.subplots(n_rows, n_cols, squeeze=False, figsize=(width * n_cols, height * n_rows), **kwargs)


def legend(fig, axes) -> None:
    """One legend below the figure, each label once, in the order the panels first drew it."""
    handles, labels = {}, []
    for ax in np.ravel(axes):
        for handle, label in zip(*ax.get_legend_handles_labels()):
            if label not in handles:
                handles[label] = handle
                labels.append(label)
    if labels:
        fig.legend(
            [handles[label] for label in labels],
            labels,
            loc="upper center",
            ncol=min(5, len(labels)),
            fontsize=8,
            bbox_to_anchor=(0.5, 0.0),
            frameon=False,
        )


def empty(stem: str | os.PathLike, title: str, message: str) -> int:
    """A figure that says why there is nothing to draw (a rule's output must still exist)."""
    fig, ax = plt.subplots(figsize=(5, 2))
    ax.axis("off")
    ax.text(0.5, 0.5, message, ha="center", va="center", fontsize=10)
    ax.set_title(title)
    return save(fig, stem)


def cell_panels(
    rows: list[dict],
    stem,
    draw_panel: Callable,
    ylabel: str,
    title: str,
    xlabel: str = "",
    ylim: tuple[float, float] | None = None,
    width: float = 4.0,
) -> int:
    """The frame most figures share: one panel per (N, lr) of unlearning, drawn by
    `draw_panel(ax, panel_rows)`, with labels, a legend below and the title above. `xlabel`
    labels the bottom row; a panel that labels its own x axis keeps it."""
    ns, lrs = values_of(rows, "n_requests"), values_of(rows, "learning_rate")
    fig, axes = panels(len(ns), len(lrs), width=width, sharey=True)
    for i, n in enumerate(ns):
        for j, lr in enumerate(lrs):
            ax = axes[i][j]
            draw_panel(ax, [r for r in rows if r["n_requests"] == n and r["learning_rate"] == lr])
            if ylim:
                ax.set_ylim(*ylim)
            ax.set_title(f"N = {n}, lr = {lr}", fontsize=9)
            ax.set_ylabel(ylabel if j == 0 else "")
            if xlabel:
                ax.set_xlabel(xlabel if i == len(ns) - 1 else "")
            ax.grid(alpha=0.3)
    legend(fig, axes)
    fig.suptitle(title)
    fig.tight_layout()
    return save(fig, stem)


def method_rate_panels(rows: list[dict], width: float, height: float, **kwargs):
    """One panel per (method, lr) of `rows`, four to a row, unused ones switched off: the figure,
    its axes and the (method, lr) of each panel in order."""
    cells = sorted({(r["method"], r["learning_rate"]) for r in rows}, key=lambda c: (method_rank(c[0]), float(c[1])))
    return _grid(cells, width, height, **kwargs)


def grid_cell_panels(rows: list[dict], width: float, height: float, **kwargs):
    """One panel per grid cell (method, N, lr) of `rows`, four to a row, unused ones switched
    off: the figure, its axes and the (method, N, lr) of each panel in order."""
    cells = sorted(
        {(r["method"], r["n_requests"], r["learning_rate"]) for r in rows},
        key=lambda c: (method_rank(c[0]), int(c[1]), float(c[2])),
    )
    return _grid(cells, width, height, **kwargs)


def _grid(cells: list[tuple], width: float, height: float, **kwargs):
    n_cols = max(1, min(4, len(cells)))
    fig, axes = panels(math.ceil(len(cells) / n_cols), n_cols, width=width, height=height, **kwargs)
    for ax in np.ravel(axes)[len(cells) :]:
        ax.axis("off")
    return fig, axes, cells


def short_layer(name: str) -> str:
    """model.layers.3 -> L3, model.embed_tokens -> emb, model.norm -> norm."""
    last = name.split(".")[-1]
    return f"L{last}" if last.isdigit() else {"embed_tokens": "emb", "norm": "norm"}.get(last, last)
