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

from typing import Callable, Mapping, Sequence

import torch

from .quantization import fake_quantize_


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


def attack_budgets(relearning: Mapping) -> list[dict]:
    """The extra attack strengths first, the primary budget (the relearned stage) last."""
    primary = {"steps": relearning["steps"], "learning_rate": relearning["learning_rate"], "primary": True}
    extra = [{"steps": b["steps"], "learning_rate": b["learning_rate"], "primary": False}
             for b in relearning["budgets"]
             if (b["steps"], b["learning_rate"]) != (primary["steps"], primary["learning_rate"])]
    return [*extra, primary]


def quantization_probe(model, bits: Sequence[int], evaluate: Callable[[], dict]) -> list[dict]:
    """Accuracies of the model with its linear weights fake-quantized to each bit width; the
    model is left as it was."""
    linear = {name: p.detach().clone() for name, p in model.named_parameters() if name.endswith(".weight")}
    results = []
    for width in bits:
        fake_quantize_(model, width)
        results.append({"bits": width, **evaluate()})
        restore(model, linear)
    return results
