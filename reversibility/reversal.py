"""Measuring reversal honestly: relearning against a control, at several attack strengths, and
quantization of the unlearned weights.

"The knowledge came back" means something only against a control: the same relearning budget
spent on never-seen data of the same domain also raises accuracy (on that data). The controlled
recovery of a budget is
    (F.Acc after relearning on the forget set - F.Acc unlearned)
  - (accuracy on the control data after relearning on it - that accuracy unlearned),
with both raw gains kept beside it.
"""

from __future__ import annotations

import math
from typing import Callable, Mapping, Sequence

import torch

from .quantization import fake_quantize_, quantized_linears


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
            runs.append({"learning_rate": budget["learning_rate"], "steps": budget["steps"],
                         "measure_at": {budget["steps"]}, "primary": False})
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
