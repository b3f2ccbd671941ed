"""Unlearning methods: one small loss each, registered by name.

A method's loss sees the model being trained, the forget batch, a retain batch (when the method
uses one), the frozen reference model (when it uses one) and its hyperparameters from the
config. The loop, optimiser and saving are shared (training.py).

Log-likelihoods are over non-pad target tokens only: token means for cross-entropies, sequence
sums for NPO, as in the NPO paper.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import torch
import torch.nn.functional as F

from .tokenization import IGNORE_INDEX, Batch


def logits_of(model, batch: Batch) -> torch.Tensor:
    return model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits


def target_logprobs(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-probability of each next token and the mask of real targets, both [B, T-1]."""
    targets = labels[:, 1:]
    mask = targets != IGNORE_INDEX
    logprobs = torch.log_softmax(logits[:, :-1].float(), dim=-1)
    picked = logprobs.gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return picked * mask, mask


def mean_nll(model, batch: Batch) -> torch.Tensor:
    """Token-mean cross-entropy over non-pad targets (the fine-tuning loss)."""
    logits = logits_of(model, batch)
    return F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), batch.labels[:, 1:].flatten(),
                           ignore_index=IGNORE_INDEX)


def sequence_logprob(model, batch: Batch) -> torch.Tensor:
    """Sum of target log-probabilities per sequence, [B]."""
    picked, _ = target_logprobs(logits_of(model, batch), batch.labels)
    return picked.sum(-1)


@dataclass(frozen=True)
class Method:
    loss: Callable[..., torch.Tensor]
    uses_reference: bool = False
    uses_retain: bool = False
    defaults: Mapping[str, Any] = field(default_factory=dict)


METHODS: dict[str, Method] = {}


def register(name: str, *, uses_reference: bool = False, uses_retain: bool = False, **defaults):
    def wrap(loss):
        METHODS[name] = Method(loss, uses_reference, uses_retain, defaults)
        return loss
    return wrap


@register("ga")
def gradient_ascent(model, forget: Batch, retain, reference, hp) -> torch.Tensor:
    """GA: minus the fine-tuning loss on the forget batch."""
    return -mean_nll(model, forget)


@register("npo", uses_reference=True, beta=0.1)
def npo(model, forget: Batch, retain, reference, hp) -> torch.Tensor:
    """NPO: (2/beta) E[log(1 + (pi_theta/pi_ref)^beta)] = -(2/beta) E[log sigmoid(-beta log ratio)]."""
    beta = hp["beta"]
    with torch.no_grad():
        reference_logprob = sequence_logprob(reference, forget)
    log_ratio = sequence_logprob(model, forget) - reference_logprob
    return -(2.0 / beta) * F.logsigmoid(-beta * log_ratio).mean()


def get_method(name: str) -> Method:
    if name not in METHODS:
        raise KeyError(f"unknown unlearning method {name!r}; known: {', '.join(sorted(METHODS))}")
    return METHODS[name]


def hyperparameters(name: str, configured: Mapping[str, Any] | None) -> dict[str, Any]:
    """The method's defaults overridden by the config's `methods.<name>` entry."""
    return {**get_method(name).defaults, **(configured or {})}
