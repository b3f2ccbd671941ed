import math

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr

from reversibility.prediction import bootstrap_interval, correlate, ranks, spearman
from reversibility.quantization import fake_quantize_
from reversibility.reversal import controlled, gain, relearning_runs


def test_spearman_matches_scipy_on_a_constructed_table():
    rng = np.random.default_rng(0)
    x = rng.normal(size=30).round(1)                 # ties included
    y = -2 * x + rng.normal(scale=0.5, size=30)
    assert spearman(x, y) == pytest.approx(spearmanr(x, y).statistic, rel=1e-12)
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert math.isnan(spearman([1, 1, 1], [1, 2, 3]))
    np.testing.assert_allclose(ranks([3.0, 1.0, 3.0, 2.0]), [3.5, 1.0, 3.5, 2.0])


def test_the_bootstrap_interval_brackets_a_strong_correlation():
    x = np.arange(20, dtype=float)
    low, high = bootstrap_interval(x, x ** 2)
    assert low <= 1.0 and high == pytest.approx(1.0) and low > 0.9
    result = correlate([1.0, None, 2.0, 3.0, float("nan"), 4.0], [1.0, 5.0, 2.0, 3.0, 1.0, 4.0])
    assert result["cells"] == 4 and result["spearman"] == pytest.approx(1.0)


def test_the_controlled_recovery_subtracts_the_control_gain():
    before = {"forget": {"accuracy": 0.1}, "unseen": {"accuracy": 0.2}}
    relearned = {"forget": {"accuracy": 0.5}}
    control = {"unseen": {"accuracy": 0.25}}
    assert controlled(gain(relearned, before, "forget"), gain(control, before, "unseen")) == pytest.approx(0.35)
    assert controlled(None, 0.1) is None


def test_shorter_budgets_at_the_primary_rate_are_read_off_the_primary_run():
    relearning = {"steps": 16, "learning_rate": 1e-4, "schedule": "constant", "warmup_steps": 0,
                  "budgets": [{"steps": 4, "learning_rate": 1e-4}, {"steps": 16, "learning_rate": 1e-4},
                              {"steps": 32, "learning_rate": 1e-4}, {"steps": 4, "learning_rate": 1e-3}]}
    runs = relearning_runs(relearning)
    assert [(r["steps"], r["learning_rate"], sorted(r["measure_at"]), r["primary"]) for r in runs] == [
        (32, 1e-4, [32], False), (4, 1e-3, [4], False), (16, 1e-4, [4, 16], True)]
    # A decaying schedule depends on the run's length: every budget then runs on its own.
    runs = relearning_runs({**relearning, "schedule": "cosine"})
    assert sorted(r["measure_at"] for r in runs)[-1] == {16} and len(runs) == 4


def test_a_prefix_of_a_constant_rate_run_is_exactly_the_shorter_run(tiny_model, tiny_tokenizer):
    """What makes reading short budgets off the primary run exact."""
    import copy

    from reversibility.stages.training import accuracies
    from reversibility.tokenization import encode
    from reversibility.training import OptimSettings
    from reversibility.unlearning import finetune

    sequences = encode(tiny_tokenizer, ["def f(x):\n    return x * 2", "import sys\nprint(sys.argv)",
                                        "for i in range(3):\n    pass"], 24)
    short, long = copy.deepcopy(tiny_model), tiny_model
    settings = OptimSettings(learning_rate=1e-2)
    short_record = finetune(short, sequences, 3, 2, settings, tiny_tokenizer.pad_token_id, seed=5)
    record = finetune(long, sequences, 8, 2, settings, tiny_tokenizer.pad_token_id, seed=5,
                      evaluate=lambda: accuracies(long, {"probe": sequences}, tiny_tokenizer.pad_token_id),
                      evaluate_at={3})
    assert [e["step"] for e in record.evaluations] == [3]
    assert record.evaluations[0]["probe"] == accuracies(short, {"probe": sequences},
                                                        tiny_tokenizer.pad_token_id)["probe"]
    assert [s["loss"] for s in record.steps[:3]] == [s["loss"] for s in short_record.steps]


def test_eight_bit_quantization_keeps_a_model_and_two_bits_break_it(tiny_model, tiny_tokenizer):
    import copy

    from reversibility.capture import token_accuracy
    from reversibility.methods import mean_nll
    from reversibility.tokenization import collate, encode
    from reversibility.training import OptimSettings
    from reversibility.unlearning import finetune

    texts = ["def add(a, b):\n    return a + b", "class Point:\n    pass", "x = [i for i in range(3)]",
             "import os\nprint(os.sep)"]
    sequences = encode(tiny_tokenizer, texts, 24)
    finetune(tiny_model, sequences, steps=40, batch_size=4, optim=OptimSettings(learning_rate=1e-2),
             pad_id=tiny_tokenizer.pad_token_id, seed=0)
    batch = collate(sequences, tiny_tokenizer.pad_token_id)

    def measure(model):
        with torch.no_grad():
            accuracy = token_accuracy(model, sequences, tiny_tokenizer.pad_token_id, 8)
            return accuracy["correct"] / accuracy["tokens"], mean_nll(model, batch).item()

    accuracy, loss = measure(tiny_model)
    eight, two = copy.deepcopy(tiny_model), copy.deepcopy(tiny_model)
    assert fake_quantize_(eight, 8) == 2 * 7           # every linear layer of both decoder layers
    fake_quantize_(two, 2)
    accuracy8, loss8 = measure(eight)
    accuracy2, loss2 = measure(two)
    assert abs(accuracy8 - accuracy) <= 0.02 and abs(loss8 - loss) < 0.02 * loss
    assert loss2 > loss * 1.2
    levels = torch.unique(two.model.layers[0].mlp.up_proj.weight[0])
    assert len(levels) <= 3                             # 2 bits, symmetric: -1, 0, 1 times the scale


THRESHOLDS = {"forgotten_share": 0.5, "reversible_share": 0.8, "catastrophic_share": 0.5}


def cell_rows(method, base, unlearned, relearned, recovery):
    from reversibility.tables import CELL_COLUMNS

    key = dict(zip(CELL_COLUMNS, ("tiny", "toy", method, 1, "0.001")))
    metrics = [{**key, "stage": stage, "forget_accuracy": forget, "retain_accuracy": 0.6, "collapsed": False}
               for stage, forget in (("base", base), ("unlearned", unlearned), ("relearned", relearned))]
    return metrics, [{**key, "primary": True, "controlled_recovery": recovery},
                     {**key, "primary": False, "controlled_recovery": 1.0}]


def test_regimes_judge_reversibility_on_the_controlled_recovery():
    from reversibility.tables import regime_rows

    # Raw relearned F.Acc 0.85 looks reversible; 0.3 of the 0.75 gain is what the control also gains.
    metrics, recovery = cell_rows("ga", base=0.9, unlearned=0.1, relearned=0.85, recovery=0.45)
    (row,) = regime_rows(metrics, recovery, THRESHOLDS)
    assert row["forget_recovered"] == pytest.approx(0.55) and row["forget_relearned"] == 0.85
    assert row["regime"] == "irreversible, retain kept"
    metrics, recovery = cell_rows("ga", base=0.9, unlearned=0.1, relearned=0.85, recovery=0.7)
    assert regime_rows(metrics, recovery, THRESHOLDS)[0]["regime"] == "reversible, retain kept"
    (missing,) = regime_rows(metrics, [], THRESHOLDS)
    assert missing["regime"] == "undetermined"


def test_prediction_rows_correlate_each_predictor_per_experiment_and_pooled():
    from reversibility.tables import PREDICTORS, prediction_rows

    rng = np.random.default_rng(1)
    cells = []
    for dataset in ("a", "b"):
        for k in range(8):
            recovery = float(rng.uniform())
            cells.append({"model": "tiny", "dataset": dataset, "mean_cka": 1 - recovery, "mean_pca_distance": "",
                          "fisher_js": float(rng.uniform()), "forget_drop": recovery + 0.01 * k,
                          "controlled_recovery": recovery})
    rows = {(r["dataset"], r["diagnostic"]): r for r in prediction_rows(cells)}
    assert set(rows) == {(d, p) for d in ("a", "b", "all") for p in PREDICTORS}
    assert rows["all", "mean_cka"]["spearman"] == pytest.approx(-1.0) and rows["all", "mean_cka"]["cells"] == 16
    assert rows["a", "mean_cka"]["cells"] == 8
    assert rows["a", "mean_pca_distance"]["cells"] == 0 and math.isnan(rows["a", "mean_pca_distance"]["spearman"])
    pooled = rows["all", "fisher_js"]
    expected = spearmanr([c["fisher_js"] for c in cells], [c["controlled_recovery"] for c in cells]).statistic
    assert pooled["spearman"] == pytest.approx(expected) and pooled["low"] <= expected <= pooled["high"]


def test_the_quantization_probe_leaves_the_model_as_it_was(tiny_model):
    from reversibility.reversal import quantization_probe

    before = {name: p.detach().clone() for name, p in tiny_model.state_dict().items()}
    results = quantization_probe(tiny_model, [8, 2], lambda: {"levels": len(torch.unique(
        tiny_model.model.layers[0].mlp.up_proj.weight[0]))})
    seen = [r["levels"] for r in results]
    assert seen[1] <= 3 < seen[0]                        # each width was in force while measured
    for name, value in tiny_model.state_dict().items():
        assert torch.equal(value, before[name]), name
