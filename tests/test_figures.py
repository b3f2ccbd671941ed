"""Every figure renders from small synthetic tables (no model), as valid images with the
expected panels and series."""

import itertools
import os

import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.collections import LineCollection, PolyCollection
from matplotlib.patches import StepPatch

from reversibility import figures
from reversibility.config import STAGES
from reversibility.figures import frame, layer_figures, recovery_figures, token_figures
from reversibility.tables import (
    BENCHMARK_COLUMNS,
    CELL_SETS,
    FISHER_COLUMNS,
    HISTOGRAM_COLUMNS,
    LOGIT_LENS_COLUMNS,
    METRICS_COLUMNS,
    PREDICTION_CELL_COLUMNS,
    PREDICTION_COLUMNS,
    PREDICTION_TARGETS,
    PREDICTORS,
    PROBE_COLUMNS,
    QUANTIZATION_COLUMNS,
    RECOVERY_COLUMNS,
    REGIME_COLUMNS,
    RELEARNING_COLUMNS,
    REPRESENTATION_COLUMNS,
    REQUEST_COLUMNS,
)

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
    recovery, quantization, prediction_cells, fisher, prediction, probe = [], [], [], [], [], []
    for (method, n, lr), stage in itertools.product(cells, STAGES):
        metrics.append(
            row(
                METRICS_COLUMNS,
                method=method,
                n_requests=n,
                learning_rate=lr,
                stage=stage,
                forget_accuracy=0.5,
                retain_accuracy=0.6,
                mia_loss_auc=0.9,
            )
        )
    for (method, n, lr), stage in itertools.product(cells, ("unlearned", "relearned")):
        for index, layer in enumerate(LAYERS):
            representations.append(
                row(
                    REPRESENTATION_COLUMNS,
                    method=method,
                    n_requests=n,
                    learning_rate=lr,
                    stage=stage,
                    split="all",
                    layer_index=index,
                    layer=layer,
                    cka=0.9,
                    pc1_cosine=0.8,
                    normalised_pc1=0.5,
                    normalised_pc2=-0.2,
                )
            )
        for layer in LAYERS[1:3]:
            for low in (1e-8, 1e-6, 1e-4):
                histograms.append(
                    row(
                        HISTOGRAM_COLUMNS,
                        method=method,
                        n_requests=n,
                        learning_rate=lr,
                        stage=stage,
                        layer=layer,
                        bin_low=low,
                        bin_high=low * 100,
                        count=5,
                    )
                )
            for sample_set in ("forget", "common"):
                fisher.append(
                    row(
                        FISHER_COLUMNS,
                        method=method,
                        n_requests=n,
                        learning_rate=lr,
                        stage=stage,
                        sample_set=sample_set,
                        layer=layer,
                        js_distance=0.2,
                        below_range_base=0.1,
                        below_range=0.25 if stage == "unlearned" else 0.5,
                    )
                )
    probe_stages = [(cell, stage) for cell in cells for stage in ("unlearned", "relearned")]
    probe_stages += [(("", n, ""), "base") for n in NS]  # the base model's probe, per N
    for ((method, n, lr), stage), (index, layer) in itertools.product(probe_stages, enumerate(LAYERS)):
        probe.append(
            row(
                PROBE_COLUMNS,
                method=method,
                n_requests=n,
                learning_rate=lr,
                stage=stage,
                layer_index=index,
                layer=layer,
                probe_auc={"base": 0.95, "unlearned": 0.9, "relearned": 0.97}[stage] - index / 100,
                output_mia_loss_auc={"base": 0.93, "unlearned": 0.5, "relearned": 0.8}[stage],
            )
        )
    # The base model's histogram on each N's forgotten samples; the figure shows the largest N.
    for n, layer in itertools.product(NS, LAYERS[1:3]):
        for low in (1e-8, 1e-6, 1e-4):
            histograms.append(
                row(
                    HISTOGRAM_COLUMNS,
                    n_requests=n,
                    stage="base",
                    layer=layer,
                    bin_low=low,
                    bin_high=low * 100,
                    count=7 if n == NS[-1] else 1 + 10 * (low == 1e-8),
                )
            )
    for method, n, lr in cells:
        for request in range(1, int(n) + 1):
            requests.append(
                row(
                    REQUEST_COLUMNS,
                    method=method,
                    n_requests=n,
                    learning_rate=lr,
                    request=request,
                    forget_seen_accuracy=0.3,
                    retain_accuracy=0.5,
                )
            )
        for step in (0, 4, 8):
            relearning.append(
                row(
                    RELEARNING_COLUMNS,
                    method=method,
                    n_requests=n,
                    learning_rate=lr,
                    step=step,
                    forget_accuracy=0.2 + step / 20,
                    retain_accuracy=0.5,
                )
            )
        regimes.append(
            row(
                REGIME_COLUMNS,
                method=method,
                n_requests=n,
                learning_rate=lr,
                damaged=n == "4",
                regime_paper="reversible, retain kept",
                regime_controlled="irreversible, retain kept",
                regime_held_out="hidden" if n == "4" else "deleted",
            )
        )
        budgets = ((4, "0.0001", "forgotten"), (16, "0.0001", "forgotten"), (16, "0.001", "forgotten"))
        for steps, relearn_lr, measured_on in (*budgets, (8, "0.0001", "held_out")):
            recovery.append(
                row(
                    RECOVERY_COLUMNS,
                    method=method,
                    n_requests=n,
                    learning_rate=lr,
                    measured_on=measured_on,
                    relearn_steps=steps,
                    relearn_learning_rate=relearn_lr,
                    forget_gain=steps / 40,
                    controlled_recovery=steps / 50,
                    primary=steps == 16 and relearn_lr == "0.0001",
                )
            )
        for bits in (8, 4):
            quantization.append(
                row(
                    QUANTIZATION_COLUMNS,
                    method=method,
                    n_requests=n,
                    learning_rate=lr,
                    bits=bits,
                    forget_gain=0.01 * (8 - bits),
                    controlled_recovery=0.3,
                )
            )
        prediction_cells.append(
            row(
                PREDICTION_CELL_COLUMNS,
                method=method,
                n_requests=n,
                learning_rate=lr,
                mean_cka=float(lr) * 1000,
                mean_pca_distance=int(n) / 10,
                fisher_js=0.1,
                forgetting=0.4,
                controlled_recovery_share=float(lr) * 500 + int(n) / 100,
                latent_recovery_share=float(lr) * 100,
                forgotten=n == "4",
            )
        )
    # Numbers no recomputation from the cells above would give: the figure must read them.
    for k, (target, cell_set, predictor) in enumerate(itertools.product(PREDICTION_TARGETS, CELL_SETS, PREDICTORS)):
        prediction.append(
            row(
                PREDICTION_COLUMNS,
                target=target,
                cell_set=cell_set,
                diagnostic=predictor,
                spearman=0.1 + k / 100,
                low=-0.5,
                high=0.75,
                cells=4 if cell_set == "forgotten" else 8,
            )
        )
    logit_lens = [
        row(
            LOGIT_LENS_COLUMNS,
            method=method,
            n_requests=n,
            learning_rate=lr,
            stage=stage,
            split=split,
            layer_index=index,
            layer=layer,
            accuracy=0.1 * index,
            mean_logprob=-1.0,
            targets=40,
        )
        for (method, n, lr), stage, split in itertools.product(cells, STAGES, ("forget", "retain", "holdout"))
        for index, layer in enumerate(LAYERS)
    ]
    return {
        "metrics": metrics,
        "logit_lens": logit_lens,
        "representations": representations,
        "fisher_histograms": histograms,
        "fisher": fisher,
        "requests": requests,
        "relearning": relearning,
        "regimes": regimes,
        "recovery": recovery,
        "quantization": quantization,
        "prediction_cells": prediction_cells,
        "prediction": prediction,
        "membership_probe": probe,
    }


@pytest.fixture(scope="module")
def drawn(tmp_path_factory):
    out = tmp_path_factory.mktemp("figures")
    return out, figures.draw_all(synthetic_tables(), "tiny", "toy", out)


def test_every_registered_figure_is_drawn_as_png_and_pdf(drawn):
    out, counts = drawn
    assert list(counts) == [figure.name for figure in figures.per_experiment(needs_benchmarks=False)]
    for name in counts:
        assert (out / f"{name}.png").read_bytes().startswith(b"\x89PNG")
        assert (out / f"{name}.pdf").read_bytes().startswith(b"%PDF")


def test_panels_follow_the_grid(drawn):
    _, counts = drawn
    panels = len(NS) * len(LRS)
    assert counts["accuracy_trajectory"] == panels
    assert counts["cka_per_layer"] == panels and counts["pca_similarity"] == panels
    assert counts["relearning_curves"] == panels
    assert counts["request_curves"] == len(LRS)  # only N > 1 has a curve over requests
    assert counts["single_unlearning"] == 3  # MIA, F.Acc, R.Acc
    assert counts["continual_heatmaps"] == len(METHODS) * 4 + 1  # + the colour bar
    assert counts["fisher_histograms"] == len(METHODS) * len(LRS)
    assert counts["recovery_budgets"] == panels and counts["quantization_reversal"] == panels
    assert counts["prediction_scatter"] == len(PREDICTION_TARGETS) * len(PREDICTORS)  # a target per row
    assert counts["regime_map"] == 3  # the paper's view, the controlled one and the held-out one
    assert counts["membership_probe"] == len(METHODS) * len(NS) * len(LRS)  # one panel per cell
    assert counts["logit_lens"] == len(METHODS) * len(NS) * len(LRS)  # one panel per cell


@pytest.fixture
def kept(monkeypatch):
    """What each figure drawn in the test looked like when it was saved: (axis, legend texts,
    texts, title) per axis."""
    figures_seen = []
    original = frame.save

    def keep(fig, stem):
        figures_seen.append(
            [
                (
                    ax,
                    [t.get_text() for t in ax.get_legend().get_texts()] if ax.get_legend() else [],
                    [t.get_text() for t in ax.texts],
                    ax.get_title(),
                )
                for ax in fig.axes
            ]
        )
        return original(fig, stem)

    for module in (frame, token_figures, layer_figures, recovery_figures):
        monkeypatch.setattr(module, "save", keep)
    return figures_seen


def test_per_layer_curves_have_one_series_per_method_and_stage(tmp_path, kept):
    layer_figures.cka_per_layer(synthetic_tables()["representations"], tmp_path / "cka")
    assert [len(ax.get_lines()) for ax, *_ in kept[0]] == [len(METHODS) * 2] * (len(NS) * len(LRS))


def test_the_membership_probe_shows_each_stages_probe_beside_its_output_level_attack(tmp_path, kept):
    layer_figures.membership_probe(synthetic_tables()["membership_probe"], tmp_path / "probe")
    for ax, *_ in kept[0]:
        probes = [line for line in ax.get_lines() if len(line.get_xdata()) == len(LAYERS)]
        assert [line.get_ydata()[0] for line in probes] == [0.95, 0.9, 0.97]  # base, unlearned, relearned
        assert [line.get_linestyle() for line in probes] == [":", "-", "--"]
        marks = [segment for collection in ax.collections for segment in collection.get_segments()]
        assert [segment[0][1] for segment in marks] == [0.93, 0.5, 0.8]
        assert all(segment[0][0] > len(LAYERS) - 1 for segment in marks)  # right of the last layer


def test_the_regime_map_shows_the_paper_view_beside_the_controlled_one(tmp_path, kept):
    assert token_figures.regime_map(synthetic_tables()["regimes"], tmp_path / "regimes") == 3
    ((paper, controlled, held_out),) = kept
    assert paper[3].startswith("paper") and controlled[3].startswith("controlled")
    assert held_out[3].startswith("held out")
    assert sum(t.startswith("hidden") for t in held_out[2]) == len(METHODS) * len(LRS)  # the N = 4 cells
    cells = len(METHODS) * len(NS) * len(LRS)
    assert sum(t.startswith("reversible\nretain kept") for t in paper[2]) == cells
    assert sum(t.startswith("irreversible\nretain kept") for t in controlled[2]) == cells
    assert sum(t.endswith("(damaged)") for t in paper[2]) == cells // len(NS)


def test_figures_of_several_seeds_draw_the_mean_with_its_interval(tmp_path, kept):
    metrics = synthetic_tables()["metrics"]
    figures.FIGURES["accuracy_trajectory"].draw({"metrics": metrics}, "tiny", "toy", tmp_path)
    assert not [c for ax, *_ in kept[0] for c in ax.collections if isinstance(c, PolyCollection)]
    # F.Acc 0.4, 0.5, 0.6 over three seeds: mean 0.5, sd 0.1, t interval 0.5 +- 4.303 x 0.1 / sqrt(3).
    seeded = [{**r, "seed": str(s), "forget_accuracy": str(0.4 + s / 10)} for r in metrics for s in range(3)]
    figures.FIGURES["accuracy_trajectory"].draw({"metrics": seeded}, "tiny", "toy", tmp_path)
    ax = kept[1][0][0]
    forget = [line for line in ax.get_lines() if line.get_linestyle() == "-"]
    assert forget and all(list(line.get_ydata()) == pytest.approx([0.5] * 3) for line in forget)
    bands = [np.ptp(c.get_paths()[0].vertices[:, 1]) for c in ax.collections if isinstance(c, PolyCollection)]
    assert 2 * 4.302652729911275 * 0.1 / np.sqrt(3) == pytest.approx(max(bands))


def test_per_layer_probe_and_lens_lines_and_quantization_bars_carry_the_interval_over_seeds(tmp_path, kept):
    tables = synthetic_tables()
    names = ("membership_probe", "logit_lens", "quantization_reversal")
    one_seed = {name: tables[figures.FIGURES[name].tables[0]] for name in names}
    seeded = {
        table: [
            {**r, "seed": str(s), column: str(float(r[column]) + s / 10)}
            for r in rows
            for s in range(3)
            if r.get(column) not in ("", None)
        ]
        for table, rows, column in (
            ("membership_probe", one_seed["membership_probe"], "probe_auc"),
            ("logit_lens", one_seed["logit_lens"], "accuracy"),
            ("quantization", one_seed["quantization_reversal"], "forget_gain"),
        )
    }
    for name in names:
        figures.FIGURES[name].draw({figures.FIGURES[name].tables[0]: one_seed[name]}, "tiny", "toy", tmp_path)
        figures.FIGURES[name].draw(seeded, "tiny", "toy", tmp_path)
    # sd 0.1 over three seeds: a band (lines) or an error bar (bars) of 2 x 4.303 x 0.1 / sqrt(3).
    width = 2 * 4.302652729911275 * 0.1 / np.sqrt(3)

    def spans(axes):
        """The heights of the bands and the vertical error bars drawn."""
        collections = [c for ax, *_ in axes for c in ax.collections]
        bands = [
            np.ptp(vertices[vertices[:, 0] == x, 1])
            for vertices in (c.get_paths()[0].vertices for c in collections if isinstance(c, PolyCollection))
            for x in set(vertices[:, 0])
        ]
        bars = [
            np.ptp(segment[:, 1]) for c in collections if isinstance(c, LineCollection) for segment in c.get_segments()
        ]
        return bands + [height for height in bars if height > 0]

    for single, several in zip(kept[0::2], kept[1::2]):
        assert spans(single) == []
        assert width == pytest.approx(max(spans(several)))


def test_the_regime_map_labels_each_cell_with_its_agreement_over_seeds(tmp_path, kept):
    regimes = synthetic_tables()["regimes"]
    seeded = [
        {**r, "seed": str(s), "regime_controlled": "reversible, retain kept" if s == 2 else r["regime_controlled"]}
        for r in regimes
        for s in range(3)
    ]
    figures.FIGURES["regime_map"].draw({"regimes": seeded}, "tiny", "toy", tmp_path)
    ((paper, controlled, _),) = kept
    cells = len(METHODS) * len(NS) * len(LRS)
    assert sum("retain kept 3/3" in t for t in paper[2]) == cells
    assert sum(t.startswith("irreversible\nretain kept 2/3") for t in controlled[2]) == cells


def test_the_prediction_scatter_shows_the_numbers_of_the_prediction_table(tmp_path, kept):
    tables = synthetic_tables()
    recovery_figures.prediction_scatter(tables["prediction_cells"], tables["prediction"], tmp_path / "prediction")
    titles = [title for _, _, _, title in kept[0]]
    for k, (target, cell_set, predictor) in enumerate(itertools.product(PREDICTION_TARGETS, CELL_SETS, PREDICTORS)):
        cells = 4 if cell_set == "forgotten" else 8
        line = f"{cell_set}: rho = {0.1 + k / 100:.2f} [-0.50, 0.75], {cells} cells"
        panel = list(PREDICTION_TARGETS).index(target) * len(PREDICTORS) + list(PREDICTORS).index(predictor)
        assert line in titles[panel].split("\n")


def test_the_fisher_histograms_show_the_share_below_their_range(tmp_path, kept):
    tables = synthetic_tables()
    layer_figures.fisher_histograms(tables["fisher_histograms"], tables["fisher"], tmp_path / "fisher")
    ax, legend, _, _ = kept[0][0]
    assert legend == ["base (10% below 1e-08)", "unlearned (25% below 1e-08)", "relearned (50% below 1e-08)"]
    # Shares of the layer's parameters: the below-range bar first (one decade wide, left of the
    # lowest edge), then the bins share the rest in proportion to their counts.
    base, unlearned, relearned = [p.get_data() for p in ax.patches if isinstance(p, StepPatch)]
    assert base.values == pytest.approx([0.1, 0.3, 0.3, 0.3])
    assert unlearned.values == pytest.approx([0.25, 0.25, 0.25, 0.25])
    assert relearned.values == pytest.approx([0.5, 1 / 6, 1 / 6, 1 / 6])
    assert unlearned.edges == pytest.approx([1e-9, 1e-8, 1e-6, 1e-4, 1e-2])


def test_method_colours_are_fixed_across_figures():
    assert frame.colour("npo") == frame.METHOD_COLOURS["npo"]
    assert len(set(frame.METHOD_COLOURS.values())) == len(frame.METHOD_COLOURS)


def test_methods_are_ordered_and_coloured_as_they_are_registered():
    from reversibility.methods import METHODS

    assert frame.METHOD_ORDER == tuple(METHODS)
    shuffled = [{"method": m} for m in ("my_new_method", *reversed(METHODS))]
    assert frame.methods_of(shuffled) == [*METHODS, "my_new_method"]
    palette = plt.get_cmap("tab10").colors
    assert [frame.colour(m) for m in METHODS] == [palette[i % len(palette)] for i in range(len(METHODS))]


def test_an_unlisted_methods_colour_is_the_same_in_every_process():
    """Each figure is drawn by its own job: a colour must not depend on the process's hash seed."""
    import subprocess
    import sys

    code = "from reversibility.figures.frame import colour; print(colour('my_new_method'))"
    seen = {
        subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "PYTHONHASHSEED": str(seed)},
        ).stdout
        for seed in (1, 2, 3)
    }
    assert len(seen) == 1
    plt.close("all")


def test_the_benchmark_figure_has_one_panel_per_benchmark_and_bars_per_stage(tmp_path):
    rows = [
        row(
            BENCHMARK_COLUMNS,
            method=method,
            n_requests=n,
            learning_rate=lr,
            stage=stage,
            benchmark=name,
            answer_style=style,
            problems=8,
            accuracy=0.25,
        )
        for method, n, lr in itertools.product(METHODS, NS, LRS)
        for stage in STAGES
        for name, style in (("gsm8k", "gsm8k"), ("math500", "math"))
    ]
    assert figures.draw_all({"benchmarks": rows}, "tiny", "toy", tmp_path, needs_benchmarks=True) == {
        "benchmark_accuracy": 2
    }
    assert (tmp_path / "benchmark_accuracy.png").read_bytes().startswith(b"\x89PNG")
    plt.close("all")


def test_every_registered_figure_resolves_to_a_drawing_function_and_a_caption():
    from pathlib import Path

    captions = Path(__file__).resolve().parents[1] / "workflow/report/figures"
    for name, figure in figures.FIGURES.items():
        assert figure.name == name
        assert callable(figure.function()), name
        assert figure.category in figures.CATEGORIES, name
        assert (captions / f"{name}.rst").is_file(), name
    assert [f.name for f in figures.per_experiment(needs_benchmarks=True)] == ["benchmark_accuracy"]
    assert {f.category for f in figures.FIGURES.values()} == set(figures.CATEGORIES)


def test_a_figure_outside_the_reports_categories_is_refused():
    with pytest.raises(ValueError, match="category"):
        figures.Figure("spare", "token_figures:regime_map", ("regimes",), "Miscellany")


def test_the_registry_loads_without_matplotlib_or_torch():
    """The Snakefile reads the registry at every parse, in every job: it must stay light."""
    import subprocess
    import sys

    code = (
        "import sys; from reversibility.figures import FIGURES, per_experiment, tables_read; "
        "per_experiment(True); tables_read(False); "
        "print(sorted(m for m in ('matplotlib', 'torch') if m in sys.modules))"
    )
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "[]"


def test_each_figure_rule_reads_every_table_its_figures_read(tmp_path, micro_config):
    """A table a figure reads but its rule does not declare would be read stale, or missing."""
    from conftest import plan

    (tmp_path / "gsm8k.jsonl").write_text('{"question": "What is 2 + 3?", "answer": "2 + 3 = 5\\n#### 5"}\n')
    micro_config["benchmarks"] = {"gsm8k": {"source": "json", "files": ["gsm8k.jsonl"], "max_new_tokens": 8}}
    micro_config["experiments"][0]["benchmarks"] = ["gsm8k"]
    inputs: list = []
    plan(tmp_path, micro_config, inputs=inputs)
    declared = {rule: paths for rule, paths in inputs if rule in ("figures", "benchmark_figure")}
    for rule, needs_benchmarks in (("figures", False), ("benchmark_figure", True)):
        read = {table for figure in figures.per_experiment(needs_benchmarks) for table in figure.tables}
        assert read and declared[rule] == {f"results/tables/{table}.csv" for table in read}, rule
