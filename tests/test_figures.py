"""Every figure renders from small synthetic tables (no model), as valid images with the
expected panels and series."""

import itertools

import matplotlib.pyplot as plt
import pytest

from reversibility import figures
from reversibility.layout import FIGURE_KINDS
from reversibility.tables import (BENCHMARK_COLUMNS, FISHER_COLUMNS, HISTOGRAM_COLUMNS, METRICS_COLUMNS, PREDICTION_CELL_COLUMNS,
                                  QUANTIZATION_COLUMNS, RECOVERY_COLUMNS, REGIME_COLUMNS, RELEARNING_COLUMNS,
                                  REPRESENTATION_COLUMNS, REQUEST_COLUMNS)

METHODS, NS, LRS = ("ga", "npo"), ("1", "4"), ("0.0001", "0.001")
LAYERS = ("model.embed_tokens", "model.layers.0", "model.layers.1", "model.norm")


def row(columns, **values):
    base = dict.fromkeys(columns, "")
    base.update({"model": "tiny", "dataset": "toy"})
    base.update({k: str(v) for k, v in values.items()})
    return base


def synthetic_tables():
    cells = list(itertools.product(METHODS, NS, LRS))
    metrics, representations, histograms, requests, relearning, regimes = [], [], [], [], [], []
    recovery, quantization, prediction_cells = [], [], []
    for (method, n, lr), stage in itertools.product(cells, figures.STAGES):
        metrics.append(row(METRICS_COLUMNS, method=method, n_requests=n, learning_rate=lr, stage=stage,
                           forget_accuracy=0.5, retain_accuracy=0.6, mia_loss_auc=0.9))
    for (method, n, lr), stage in itertools.product(cells, ("unlearned", "relearned")):
        for index, layer in enumerate(LAYERS):
            representations.append(row(REPRESENTATION_COLUMNS, method=method, n_requests=n, learning_rate=lr,
                                        stage=stage, split="all", layer_index=index, layer=layer, cka=0.9,
                                        pc1_cosine=0.8, normalised_pc1=0.5, normalised_pc2=-0.2))
        for layer in LAYERS[1:3]:
            for low in (1e-8, 1e-6, 1e-4):
                histograms.append(row(HISTOGRAM_COLUMNS, method=method, n_requests=n, learning_rate=lr, stage=stage,
                                      layer=layer, bin_low=low, bin_high=low * 100, count=5))
    for layer in LAYERS[1:3]:
        for low in (1e-8, 1e-6, 1e-4):
            histograms.append(row(HISTOGRAM_COLUMNS, stage="base", layer=layer, bin_low=low, bin_high=low * 100, count=7))
    for method, n, lr in cells:
        for request in range(1, int(n) + 1):
            requests.append(row(REQUEST_COLUMNS, method=method, n_requests=n, learning_rate=lr, request=request,
                                forget_seen_accuracy=0.3, retain_accuracy=0.5))
        for step in (0, 4, 8):
            relearning.append(row(RELEARNING_COLUMNS, method=method, n_requests=n, learning_rate=lr, step=step,
                                  forget_accuracy=0.2 + step / 20, retain_accuracy=0.5))
        regimes.append(row(REGIME_COLUMNS, method=method, n_requests=n, learning_rate=lr,
                           regime="reversible, retain kept"))
        for steps, relearn_lr in ((4, "0.0001"), (16, "0.0001"), (16, "0.001")):
            recovery.append(row(RECOVERY_COLUMNS, method=method, n_requests=n, learning_rate=lr, relearn_steps=steps,
                                relearn_learning_rate=relearn_lr, forget_gain=steps / 40,
                                controlled_recovery=steps / 50, primary=steps == 16 and relearn_lr == "0.0001"))
        for bits in (8, 4):
            quantization.append(row(QUANTIZATION_COLUMNS, method=method, n_requests=n, learning_rate=lr, bits=bits,
                                    forget_gain=0.01 * (8 - bits), controlled_recovery=0.3))
        prediction_cells.append(row(PREDICTION_CELL_COLUMNS, method=method, n_requests=n, learning_rate=lr,
                                    mean_cka=float(lr) * 1000, mean_pca_distance=int(n) / 10, fisher_js=0.1,
                                    forget_drop=0.4, controlled_recovery=float(lr) * 500 + int(n) / 100))
    return {"metrics": metrics, "representations": representations, "fisher_histograms": histograms,
            "requests": requests, "relearning": relearning, "regimes": regimes, "recovery": recovery,
            "quantization": quantization, "prediction_cells": prediction_cells}


@pytest.fixture(scope="module")
def drawn(tmp_path_factory):
    out = tmp_path_factory.mktemp("figures")
    return out, figures.draw_all(synthetic_tables(), "tiny", "toy", out)


def test_every_registered_figure_is_drawn_as_png_and_pdf(drawn):
    out, counts = drawn
    assert set(counts) == set(figures.FIGURES) == set(FIGURE_KINDS)
    for name in FIGURE_KINDS:
        assert (out / f"{name}.png").read_bytes().startswith(b"\x89PNG")
        assert (out / f"{name}.pdf").read_bytes().startswith(b"%PDF")


def test_panels_follow_the_grid(drawn):
    _, counts = drawn
    panels = len(NS) * len(LRS)
    assert counts["accuracy_trajectory"] == panels
    assert counts["cka_per_layer"] == panels and counts["pca_similarity"] == panels
    assert counts["relearning_curves"] == panels
    assert counts["request_curves"] == len(LRS)            # only N > 1 has a curve over requests
    assert counts["single_unlearning"] == 3                # MIA, F.Acc, R.Acc
    assert counts["continual_heatmaps"] == len(METHODS) * 4 + 1   # + the colour bar
    assert counts["fisher_histograms"] == len(METHODS) * len(LRS)
    assert counts["recovery_budgets"] == panels and counts["quantization_reversal"] == panels
    assert counts["prediction_scatter"] == 4              # one panel per predictor
    assert counts["regime_map"] == 1


def test_per_layer_curves_have_one_series_per_method_and_stage(tmp_path):
    tables = synthetic_tables()
    captured = {}
    original = figures.save

    def keep(fig, stem):
        captured["lines"] = [len(ax.get_lines()) for ax in fig.axes]
        return original(fig, stem)

    figures.save = keep
    try:
        figures.cka_per_layer(tables["representations"], tmp_path / "cka")
    finally:
        figures.save = original
    assert captured["lines"] == [len(METHODS) * 2] * (len(NS) * len(LRS))


def test_method_colours_are_fixed_across_figures():
    assert figures.colour("npo") == figures.METHOD_COLOURS["npo"]
    assert len(set(figures.METHOD_COLOURS.values())) == len(figures.METHOD_COLOURS)
    plt.close("all")


def test_the_benchmark_figure_has_one_panel_per_benchmark_and_bars_per_stage(tmp_path):
    rows = [row(BENCHMARK_COLUMNS, method=method, n_requests=n, learning_rate=lr, stage=stage, benchmark=name,
                answer_style=style, problems=8, accuracy=0.25)
            for method, n, lr in itertools.product(METHODS, NS, LRS) for stage in figures.STAGES
            for name, style in (("gsm8k", "gsm8k"), ("math500", "math"))]
    assert figures.benchmark_accuracy(rows, tmp_path / "benchmarks") == 2
    assert (tmp_path / "benchmarks.png").read_bytes().startswith(b"\x89PNG")
    plt.close("all")
