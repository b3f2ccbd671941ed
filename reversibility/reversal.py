"""Measuring reversal honestly: relearning against a control, at several attack strengths, and
quantization of the unlearned weights.

"The knowledge came back" means something only against a control: the same relearning budget
spent on never-seen data of the same domain also raises accuracy (on that data). The controlled
recovery of a budget is
    (F.Acc after relearning on the forget set - F.Acc unlearned)
  - (accuracy on the control data after relearning on it - that accuracy unlearned),
with both raw gains kept beside it.

Relearning on the forgotten samples cannot tell re-memorising from recalling: held-out recovery
(`measure_held_out`, after Deeb and Roger 2024) relearns one part of them and measures the other,
which the attack never saw. Its latent recovery is
    (accuracy on the held-out part after relearning the other part - that accuracy unlearned)
  - (the same run's gain on the control data),
knowledge that comes back without being shown again: hidden, not deleted.

The relearn job measures its model with these, in order: the unlearned model's accuracies, those
under quantization (`quantization_measures`), held-out recovery, then every budget against its
control (`measure_budgets`); each run a `Relearner.train` from the unlearned weights.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Callable, Mapping, Sequence

import torch

from .cell_data import SEPARATE_RUN
from .models import gradient_checkpointing
from .precision import Precision
from .quantization import fake_quantize_, quantized_linears
from .training import OptimSettings, TrainRecord
from .unlearning import finetune

Accuracy = Callable[..., dict]  # accuracy(*probe names) -> {name: counts}; forget and retain by default


def snapshot(model) -> dict[str, torch.Tensor]:
    """The trainable weights (all of a fully fine-tuned model, the adapter of a LoRA one)."""
    return {name: p.detach().clone() for name, p in model.named_parameters() if p.requires_grad}


@torch.no_grad()
def restore(model, weights: Mapping[str, torch.Tensor]) -> None:
    parameters = dict(model.named_parameters())
    for name, value in weights.items():
        parameters[name].copy_(value)


def gain(after: Mapping[str, dict], before: Mapping[str, dict], split: str):
    a, b = after[split]["accuracy"], before[split]["accuracy"]
    return None if a is None or b is None else a - b


def controlled(forget_gain, control_gain):
    return None if forget_gain is None or control_gain is None else forget_gain - control_gain


def matched_steps(relearning: Mapping, n_forgotten: int) -> int:
    """Steps of the budget matched to the forget set: `matched_epochs` passes over the cell's
    forgotten samples at the relearning batch size (the paper's reversibility is judged on it)."""
    return math.ceil(relearning["matched_epochs"] * n_forgotten / relearning["batch_size"])


def relearning_runs(relearning: Mapping, matched: int | None = None) -> list[dict]:
    """The training runs that measure every attack budget (steps x learning rate), the run of
    the primary budget (the relearned stage) last.

    The budgets are the primary one (`relearning.steps`, `learning_rate`), the extra `budgets`
    and, given `matched` steps, the budget matched to the forget set at the primary rate. Under a
    constant learning rate without warmup, the first s steps of a longer run at the same rate are
    exactly an s-step run (the same batches, the same updates), so a budget at the primary rate
    with fewer steps is read off the primary run after its s-th step; every other budget gets a
    run of its own. Each run: `learning_rate`, `steps`, `measure_at` (the step counts of the
    budgets it measures) and `primary`.
    """
    steps, rate = relearning["steps"], relearning["learning_rate"]
    prefixes_exact = relearning.get("schedule", "constant") == "constant" and not relearning.get("warmup_steps")
    primary = {"learning_rate": rate, "steps": steps, "measure_at": {steps}, "primary": True}
    budgets = [*relearning["budgets"], *([{"steps": matched, "learning_rate": rate}] if matched else [])]
    runs = []
    for budget in budgets:
        if (budget["steps"], budget["learning_rate"]) == (steps, rate):
            continue
        if prefixes_exact and budget["learning_rate"] == rate and budget["steps"] <= steps:
            primary["measure_at"].add(budget["steps"])
        elif (budget["steps"], budget["learning_rate"]) not in {(run["steps"], run["learning_rate"]) for run in runs}:
            runs.append(
                {
                    "learning_rate": budget["learning_rate"],
                    "steps": budget["steps"],
                    "measure_at": {budget["steps"]},
                    "primary": False,
                }
            )
    return [*runs, primary]


def quantization_probe(model, bits: Sequence[int], evaluate: Callable[[], dict]) -> list[dict]:
    """Accuracies of the model with its linear weights fake-quantized to each bit width; the
    model is left as it was."""
    originals = [(m.weight, m.weight.detach().clone()) for m in quantized_linears(model)]
    results = []
    for width in bits:
        fake_quantize_(model, width)
        results.append({"bits": width, **evaluate()})
        with torch.no_grad():
            for weight, original in originals:
                weight.copy_(original)
    return results


def quantization_measures(model, bits: Sequence[int], accuracy: Accuracy, unlearned: Mapping[str, dict]) -> list[dict]:
    """The quantization probe with the forget gain of each width over the unlearned model: what
    rounding the weights alone brings back."""
    return [{**q, "forget_gain": gain(q, unlearned, "forget")} for q in quantization_probe(model, bits, accuracy)]


@dataclass
class Relearner:
    """Relearning runs of one model, each from the weights it had when this was made."""

    model: Any
    relearning: Mapping
    pad_id: int
    seed: int
    precision: Precision = Precision()
    checkpointing: bool = False
    start: dict[str, torch.Tensor] = field(init=False)

    def __post_init__(self) -> None:
        self.start = snapshot(self.model)

    def measure_start(self, measure: Callable[[], dict]) -> dict:
        """`measure` of the model at the weights every run starts from."""
        restore(self.model, self.start)
        return measure()

    def train(
        self, sequences: Sequence[Sequence[int]], run: Mapping, measure: Callable[[], dict], evaluate_every: int = 0
    ) -> tuple[TrainRecord, dict[int, dict]]:
        """Relearn `sequences` for one of `relearning_runs`; its record and the `measure` results
        after each step of its `measure_at` (the model as it is, should training stop early)."""
        restore(self.model, self.start)
        settings = OptimSettings.from_config(self.relearning, learning_rate=run["learning_rate"])
        with gradient_checkpointing(self.model, self.checkpointing):
            record = finetune(
                self.model,
                sequences,
                run["steps"],
                self.relearning["batch_size"],
                settings,
                self.pad_id,
                self.seed,
                desc=f"relearning {run['steps']} steps",
                evaluate=measure,
                evaluate_every=evaluate_every,
                evaluate_at=run["measure_at"],
                precision=self.precision,
            )
        found = {e["step"]: {k: v for k, v in e.items() if k != "step"} for e in record.evaluations}
        return record, {s: found[s] if s in found else measure() for s in sorted(run["measure_at"])}


def measure_held_out(
    relearner: Relearner, relearned_part: Sequence[Sequence[int]], accuracy: Accuracy, steps: int
) -> dict:
    """Relearn `relearned_part` of the forgotten samples for `steps` steps at the primary learning
    rate (the budget matched to the whole forget set: the attack of the regimes, shown half the
    samples) and measure the `held_out` part and the control (`unseen`) before and after; the
    held-out gain beyond the control's is the latent recovery."""
    unlearned = relearner.measure_start(partial(accuracy, "held_out", "unseen"))
    run = {"learning_rate": relearner.relearning["learning_rate"], "steps": steps, "measure_at": {steps}}
    _, after = relearner.train(relearned_part, run, partial(accuracy, "held_out", "retain", "unseen"))
    relearned = after[steps]
    held_out_gain, control_gain = gain(relearned, unlearned, "held_out"), gain(relearned, unlearned, "unseen")
    return {
        "steps": steps,
        "learning_rate": run["learning_rate"],
        "relearned_samples": len(relearned_part),
        "unlearned": unlearned,
        "relearned": relearned,
        "held_out_gain": held_out_gain,
        "control_gain": control_gain,
        "latent_recovery": controlled(held_out_gain, control_gain),
    }


def measure_budgets(
    relearner: Relearner,
    samples: Sequence[Sequence[int]],
    control: Sequence[Sequence[int]],
    accuracy: Accuracy,
    unlearned: Mapping[str, dict],
    *,
    control_kind: str,
    matched: int,
    curve_every: int = 0,
) -> tuple[list[dict], TrainRecord]:
    """Relearn `samples` for every attack budget against its control (cell_data.py: a run of the
    same budget on the `control` samples, or the same run measured on them); every budget's
    `budget_measures`, and the record of the primary budget's run (the relearned stage, with
    accuracies every `curve_every` steps)."""
    budgets = []
    for run in relearning_runs(relearner.relearning, matched):
        every = curve_every if run["primary"] else 0
        if control_kind == SEPARATE_RUN:
            # What the same budget teaches on never-seen data, measured there.
            _, controls = relearner.train(control, run, partial(accuracy, "unseen"))
            record, relearned = relearner.train(samples, run, accuracy, every)
        else:
            # A transfer: the control is the same run measured on never-seen data.
            record, relearned = relearner.train(samples, run, partial(accuracy, "forget", "retain", "unseen"), every)
            controls = relearned
        budgets += [
            budget_measures(
                run, steps, relearned[steps], controls[steps], unlearned, matched, relearner.relearning["learning_rate"]
            )
            for steps in sorted(run["measure_at"])
        ]
    return budgets, record


def budget_measures(
    run: Mapping,
    steps: int,
    relearned: Mapping[str, dict],
    control: Mapping[str, dict],
    unlearned: Mapping[str, dict],
    matched: int,
    primary_rate: float,
) -> dict:
    """The budget of `steps` steps of `run`: its accuracies after relearning and after its control,
    and the raw and controlled gains over the unlearned model."""
    forget_gain, control_gain = gain(relearned, unlearned, "forget"), gain(control, unlearned, "unseen")
    return {
        "steps": steps,
        "learning_rate": run["learning_rate"],
        "primary": run["primary"] and steps == run["steps"],
        "matched": steps == matched and run["learning_rate"] == primary_rate,
        "relearned": relearned,
        "control": {"unseen": control["unseen"]},
        "forget_gain": forget_gain,
        "control_gain": control_gain,
        "controlled_recovery": controlled(forget_gain, control_gain),
    }
