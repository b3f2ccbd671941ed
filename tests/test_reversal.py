import math

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr

from reversibility.prediction import bootstrap_interval, correlate, ranks, spearman
from reversibility.quantization import fake_quantize_
from reversibility.reversal import controlled, gain, matched_steps, relearning_runs


def test_spearman_matches_scipy_on_a_constructed_table():
    rng = np.random.default_rng(0)
    x = rng.normal(size=30).round(1)  # ties included
    y = -2 * x + rng.normal(scale=0.5, size=30)
    assert spearman(x, y) == pytest.approx(spearmanr(x, y).statistic, rel=1e-12)
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert math.isnan(spearman([1, 1, 1], [1, 2, 3]))
    np.testing.assert_allclose(ranks([3.0, 1.0, 3.0, 2.0]), [3.5, 1.0, 3.5, 2.0])


def test_the_bootstrap_interval_brackets_a_strong_correlation():
    x = np.arange(20, dtype=float)
    low, high = bootstrap_interval(x, x**2)
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
    relearning = {
        "steps": 16,
        "learning_rate": 1e-4,
        "schedule": "constant",
        "warmup_steps": 0,
        "budgets": [
            {"steps": 4, "learning_rate": 1e-4},
            {"steps": 16, "learning_rate": 1e-4},
            {"steps": 32, "learning_rate": 1e-4},
            {"steps": 4, "learning_rate": 1e-3},
        ],
    }
    runs = relearning_runs(relearning)
    assert [(r["steps"], r["learning_rate"], sorted(r["measure_at"]), r["primary"]) for r in runs] == [
        (32, 1e-4, [32], False),
        (4, 1e-3, [4], False),
        (16, 1e-4, [4, 16], True),
    ]
    # A decaying schedule depends on the run's length: every budget then runs on its own.
    runs = relearning_runs({**relearning, "schedule": "cosine"})
    assert sorted(r["measure_at"] for r in runs)[-1] == {16} and len(runs) == 4


def test_the_budget_matched_to_the_forget_set_scales_with_n_and_is_measured_once():
    relearning = {
        "steps": 16,
        "learning_rate": 1e-4,
        "batch_size": 8,
        "matched_epochs": 2,
        "budgets": [{"steps": 32, "learning_rate": 1e-4}],
    }
    assert [matched_steps(relearning, n * 8) for n in (1, 8, 100)] == [2, 16, 200]
    assert matched_steps({**relearning, "matched_epochs": 1}, 12) == 2  # a partial batch is a step
    # Within the primary run: read off it; equal to the primary budget: nothing added.
    assert relearning_runs(relearning, 2)[-1]["measure_at"] == {2, 16}
    assert len(relearning_runs(relearning, 16)) == 2
    # Longer, and equal to an extra budget: that budget's run, once.
    assert [(r["steps"], sorted(r["measure_at"])) for r in relearning_runs(relearning, 32)] == [(32, [32]), (16, [16])]
    assert [r["steps"] for r in relearning_runs(relearning, 200)] == [32, 200, 16]


def test_a_prefix_of_a_constant_rate_run_is_exactly_the_shorter_run(tiny_model, tiny_tokenizer):
    """What makes reading short budgets off the primary run exact."""
    import copy

    from reversibility.stages.training_jobs import accuracies
    from reversibility.tokenization import encode
    from reversibility.training import OptimSettings
    from reversibility.unlearning import finetune

    sequences = encode(
        tiny_tokenizer,
        ["def f(x):\n    return x * 2", "import sys\nprint(sys.argv)", "for i in range(3):\n    pass"],
        24,
    )
    short, long = copy.deepcopy(tiny_model), tiny_model
    settings = OptimSettings(learning_rate=1e-2)
    short_record = finetune(short, sequences, 3, 2, settings, tiny_tokenizer.pad_token_id, seed=5)
    record = finetune(
        long,
        sequences,
        8,
        2,
        settings,
        tiny_tokenizer.pad_token_id,
        seed=5,
        evaluate=lambda: accuracies(long, {"probe": sequences}, tiny_tokenizer.pad_token_id),
        evaluate_at={3},
    )
    assert [e["step"] for e in record.evaluations] == [3]
    assert (
        record.evaluations[0]["probe"] == accuracies(short, {"probe": sequences}, tiny_tokenizer.pad_token_id)["probe"]
    )
    assert [s["loss"] for s in record.steps[:3]] == [s["loss"] for s in short_record.steps]


def test_eight_bit_quantization_keeps_a_model_and_two_bits_break_it(tiny_model, tiny_tokenizer):
    import copy

    from reversibility.forward_pass import token_accuracy
    from reversibility.methods import mean_nll
    from reversibility.tokenization import collate, encode
    from reversibility.training import OptimSettings
    from reversibility.unlearning import finetune

    texts = [
        "def add(a, b):\n    return a + b",
        "class Point:\n    pass",
        "x = [i for i in range(3)]",
        "import os\nprint(os.sep)",
    ]
    sequences = encode(tiny_tokenizer, texts, 24)
    finetune(
        tiny_model,
        sequences,
        steps=40,
        batch_size=4,
        optim=OptimSettings(learning_rate=1e-2),
        pad_id=tiny_tokenizer.pad_token_id,
        seed=0,
    )
    batch = collate(sequences, tiny_tokenizer.pad_token_id)

    def measure(model):
        with torch.no_grad():
            accuracy = token_accuracy(model, sequences, tiny_tokenizer.pad_token_id, 8)
            return accuracy["correct"] / accuracy["tokens"], mean_nll(model, batch).item()

    accuracy, loss = measure(tiny_model)
    eight, two = copy.deepcopy(tiny_model), copy.deepcopy(tiny_model)
    assert fake_quantize_(eight, 8) == 2 * 7  # every linear layer of both decoder layers
    fake_quantize_(two, 2)
    accuracy8, loss8 = measure(eight)
    accuracy2, loss2 = measure(two)
    assert abs(accuracy8 - accuracy) <= 0.02 and abs(loss8 - loss) < 0.02 * loss
    assert loss2 > loss * 1.2
    levels = torch.unique(two.model.layers[0].mlp.up_proj.weight[0])
    assert len(levels) <= 3  # 2 bits, symmetric: -1, 0, 1 times the scale


def test_the_quantization_probe_leaves_the_model_as_it_was(tiny_model):
    from reversibility.reversal import quantization_probe

    before = {name: p.detach().clone() for name, p in tiny_model.state_dict().items()}
    results = quantization_probe(
        tiny_model, [8, 2], lambda: {"levels": len(torch.unique(tiny_model.model.layers[0].mlp.up_proj.weight[0]))}
    )
    seen = [r["levels"] for r in results]
    assert seen[1] <= 3 < seen[0]  # each width was in force while measured
    for name, value in tiny_model.state_dict().items():
        assert torch.equal(value, before[name]), name


class StubRelearner:
    """Stands in for `Relearner`: records its runs; the accuracy it reports depends on what it was
    last trained on (0.4 on the relearning samples, 0.2 on the control samples)."""

    relearning = {"steps": 4, "learning_rate": 1e-3, "budgets": [{"steps": 2, "learning_rate": 1e-2}]}

    def __init__(self):
        self.runs, self.trained_on = [], None

    def train(self, sequences, run, measure, evaluate_every=0):
        from reversibility.training import TrainRecord

        self.trained_on = sequences
        self.runs.append((sequences, run["steps"], run["learning_rate"], evaluate_every))
        return TrainRecord(steps=[{"run": len(self.runs)}]), {s: measure() for s in sorted(run["measure_at"])}

    def measure_start(self, measure):
        self.trained_on = None
        return measure()

    def accuracy(self, *names):
        value = 0.4 if self.trained_on == "samples" else 0.2
        return {name: {"accuracy": value} for name in names or ("forget", "retain")}


@pytest.mark.parametrize("control_kind", ["separate_run", "same_run"])
def test_every_budget_is_measured_against_its_control(control_kind):
    from reversibility.reversal import measure_budgets

    relearner = StubRelearner()
    unlearned = {"forget": {"accuracy": 0.1}, "retain": {"accuracy": 0.5}, "unseen": {"accuracy": 0.1}}
    budgets, record = measure_budgets(
        relearner,
        "samples",
        "control",
        relearner.accuracy,
        unlearned,
        control_kind=control_kind,
        matched=2,
        curve_every=1,
    )
    # The 2-step budget at 1e-2 runs on its own; the matched one (2 steps at 1e-3) is read off the primary run.
    assert [(b["steps"], b["learning_rate"], b["primary"], b["matched"]) for b in budgets] == [
        (2, 1e-2, False, False),
        (2, 1e-3, False, True),
        (4, 1e-3, True, False),
    ]
    assert record.steps == [{"run": len(relearner.runs)}]  # the primary run's, the last
    if control_kind == "separate_run":
        assert relearner.runs == [
            ("control", 2, 1e-2, 0),
            ("samples", 2, 1e-2, 0),
            ("control", 4, 1e-3, 0),
            ("samples", 4, 1e-3, 1),
        ]
        expected_control_gain = 0.2 - 0.1
    else:
        assert relearner.runs == [("samples", 2, 1e-2, 0), ("samples", 4, 1e-3, 1)]
        expected_control_gain = 0.4 - 0.1
    for budget in budgets:
        assert budget["forget_gain"] == pytest.approx(0.3)
        assert budget["control_gain"] == pytest.approx(expected_control_gain)
        assert budget["controlled_recovery"] == pytest.approx(0.3 - expected_control_gain)


def test_held_out_recovery_relearns_one_part_and_measures_the_other_against_the_same_run():
    from reversibility.reversal import measure_held_out

    relearner = StubRelearner()
    relearner.trained_on = "control"  # left over from an earlier run: the start is measured afresh

    def accuracy(*names):
        # Unlearned 0.1 everywhere; after relearning "part" 0.45 on the held-out part, 0.25 on the control.
        after = {"held_out": 0.45, "retain": 0.5, "unseen": 0.25}
        return {n: {"accuracy": after[n] if relearner.trained_on == "part" else 0.1} for n in names}

    held_out = measure_held_out(relearner, "part", accuracy, steps=3)
    assert relearner.runs == [("part", 3, 1e-3, 0)]  # one run, the matched steps at the primary rate
    assert held_out["unlearned"] == {"held_out": {"accuracy": 0.1}, "unseen": {"accuracy": 0.1}}
    assert held_out["held_out_gain"] == pytest.approx(0.35) and held_out["control_gain"] == pytest.approx(0.15)
    assert held_out["latent_recovery"] == pytest.approx(0.2)
    assert held_out["relearned"]["retain"] == {"accuracy": 0.5}
