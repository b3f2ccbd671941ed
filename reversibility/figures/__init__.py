"""Figures drawn from the tidy tables only (never from models), in PNG and PDF.

Every drawing function takes rows of the tables (dicts of strings, as `tables.read_csv` returns
them) for one (model, dataset) and an output stem; it writes `<stem>.png` and `<stem>.pdf` and
returns the figure's axes count.

    registry          every figure: name, drawing function, tables read, report category
    frame             colours, panel grids, legends and saving, shared by every figure
    token_figures     token accuracy through unlearning and relearning; regimes
    layer_figures     per-layer representation diagnostics and Fisher information
    recovery_figures  recovery under relearning and quantization, and its prediction

Importing the package loads the registry only, without matplotlib: the Snakefile reads it.
"""

from .registry import CATEGORIES, FIGURES, Figure, draw, draw_all, per_experiment, tables_read

__all__ = ["CATEGORIES", "FIGURES", "Figure", "draw", "draw_all", "per_experiment", "tables_read"]
