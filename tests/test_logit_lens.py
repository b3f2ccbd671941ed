"""The logit lens from captures to a table and a figure: per-cell sums worked by hand, the
table's rows, and the figure (the capture's readout itself is tested in test_capture.py)."""

import json

import numpy as np
import pytest

from reversibility.activations import Capture, write_capture
from reversibility.config import Cell
from reversibility.layout import diagnostics_json
from reversibility.stages.diagnostics import logit_lens_comparison
from reversibility.tables import LOGIT_LENS_COLUMNS, logit_lens_rows

LAYERS = ["model.embed_tokens", "model.layers.0", "model.norm"]


def capture(path, correct, logprob, targets, lens=True):
    """A capture of three forget samples, one retain and one holdout sample, whose lens sums per
    layer are `correct`, `logprob` and `targets` (rows: samples in that order); as a capture
    writes it, the retain probes have no lens."""
    values = {
        name: np.asarray(v, dtype=float)
        for name, v in zip(("correct", "logprob", "targets"), (correct, logprob, targets))
    }
    splits = {}
    for split, rows in (("forget", slice(0, 3)), ("retain", slice(3, 4)), ("holdout", slice(4, 5))):
        n = len(range(5)[rows])
        splits[split] = {
            "ids": [f"{split}#{i}" for i in range(n)],
            "features": [np.zeros((n, 2))] * len(LAYERS),
            "stats": {},
            **({"lens": {name: v[rows] for name, v in values.items()}} if lens and split != "retain" else {}),
        }
    write_capture(path, LAYERS, splits, {})
    return path


def test_a_cells_lens_is_the_share_of_its_own_forget_targets_per_layer(tmp_path):
    targets = [[4, 4, 4], [2, 2, 2], [10, 10, 10], [5, 5, 5], [8, 8, 8]]
    base = capture(
        tmp_path / "base.h5", [[4, 4, 4], [2, 2, 2], [0, 5, 10], [1, 2, 3], [0, 0, 0]], np.zeros((5, 3)) - 1, targets
    )
    stage = capture(
        tmp_path / "stage.h5",
        [[1, 4, 0], [0, 2, 0], [0, 0, 0], [1, 2, 3], [0, 0, 0]],
        [[-8, -2, -40], [-4, -1, -20], [-10, -10, -10], [-5, -5, -5], [-8, -8, -8]],
        targets,
    )
    subsets = {"forget": np.array([0, 1]), "retain": slice(None), "holdout": slice(None)}  # requests 1..N: 2 samples
    with Capture(base) as b, Capture(stage) as s:
        lens = logit_lens_comparison(b, s, subsets)
    assert lens["layers"] == LAYERS
    assert lens["base"]["forget"]["accuracy"] == [1.0, 1.0, 1.0]
    assert lens["stage"]["forget"] == {
        "accuracy": [1 / 6, 1.0, 0.0],
        "mean_logprob": [-2.0, -0.5, -10.0],
        "targets": [6, 6, 6],
    }
    assert set(lens["stage"]) == {"forget", "holdout"}  # the retain probes are not read
    assert lens["base"]["holdout"]["mean_logprob"] == [-1 / 8] * 3


def test_a_capture_without_the_lens_gives_no_comparison(tmp_path):
    base = capture(tmp_path / "base.h5", np.ones((5, 3)), np.ones((5, 3)), np.ones((5, 3)))
    old = capture(tmp_path / "old.h5", np.ones((5, 3)), np.ones((5, 3)), np.ones((5, 3)), lens=False)
    with Capture(base) as b, Capture(old) as s:
        assert logit_lens_comparison(b, s, {"forget": slice(None)}) == {}


def lens_result(base_accuracy, stage_accuracy):
    def per_split(accuracy):
        return {
            split: {"accuracy": accuracy, "mean_logprob": [-1.0] * 3, "targets": [6] * 3}
            for split in ("forget", "holdout")
        }

    return {"layers": LAYERS, "base": per_split(base_accuracy), "stage": per_split(stage_accuracy)}


def write_cell(results, cell, lens_by_stage):
    for stage, lens in lens_by_stage.items():
        path = results / diagnostics_json(cell, stage, "results")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"logit_lens": lens} if lens is not None else {}))


def test_the_table_has_every_stage_split_and_layer_of_a_cell_and_none_for_a_cell_without_lens(tmp_path):
    cells = [Cell("tiny", "toy", "ga", 2, 1e-3), Cell("tiny", "toy", "npo", 2, 1e-3)]
    write_cell(
        tmp_path,
        cells[0],
        {"unlearned": lens_result([0.9] * 3, [0.6, 0.5, 0.0]), "relearned": lens_result([0.9] * 3, [0.8, 0.8, 0.7])},
    )
    write_cell(tmp_path, cells[1], {"unlearned": None, "relearned": None})
    rows = logit_lens_rows(cells, results=str(tmp_path / "results"))
    assert all(set(r) == set(LOGIT_LENS_COLUMNS) for r in rows)
    assert len(rows) == 3 * 2 * 3 and {r["method"] for r in rows} == {"ga"}
    forget = {(r["stage"], r["layer"]): r["accuracy"] for r in rows if r["split"] == "forget"}
    assert forget[("base", "model.norm")] == 0.9
    assert forget[("unlearned", "model.layers.0")] == 0.5 and forget[("unlearned", "model.norm")] == 0.0
    assert forget[("relearned", "model.norm")] == 0.7


def test_the_figure_has_a_panel_per_cell(tmp_path):
    pytest.importorskip("matplotlib")
    from reversibility.figures import draw

    cells = [Cell("tiny", "toy", "ga", n, 1e-3) for n in (1, 2)]
    for cell in cells:
        write_cell(
            tmp_path,
            cell,
            {"unlearned": lens_result([0.9] * 3, [0.6, 0.5, 0.0]), "relearned": lens_result([0.9] * 3, [0.8] * 3)},
        )
    rows = [{k: str(v) for k, v in r.items()} for r in logit_lens_rows(cells, results=str(tmp_path / "results"))]
    assert draw("logit_lens", {"logit_lens": rows}, "tiny", "toy", tmp_path / "figures") == 2
    assert (tmp_path / "figures" / "logit_lens.png").read_bytes().startswith(b"\x89PNG")
    assert draw("logit_lens", {"logit_lens": []}, "tiny", "toy", tmp_path / "none") == 1
