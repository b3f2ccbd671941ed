"""Unlearning methods: one small loss each, registered by name.

A method's loss sees the model being trained, the forget batch, a retain batch (when the method
uses one), the frozen reference model (when it uses one) and its hyperparameters from the
config. The loop, optimiser and saving are shared (training.py).

Log-likelihoods are over non-pad target tokens only: token means for cross-entropies, sequence
sums for NPO, as in the NPO paper. Adding a method is one function and one `@register` line.
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


# --------------------------------------------------------------------------- shared terms

def retain_nll(model, batch: Batch, reduction: str = "token") -> torch.Tensor:
    """Cross-entropy on a retain batch: token mean, or per-sequence sum averaged over sequences."""
    if reduction == "token":
        return mean_nll(model, batch)
    return -sequence_logprob(model, batch).mean()


def retain_kl(model, reference, batch: Batch, reduction: str = "token") -> torch.Tensor:
    """KL(p_ref || p_theta) of the next-token distributions on a retain batch, over real targets."""
    logprobs = torch.log_softmax(logits_of(model, batch)[:, :-1].float(), dim=-1)
    with torch.no_grad():
        reference_logprobs = torch.log_softmax(logits_of(reference, batch)[:, :-1].float(), dim=-1)
    per_token = (reference_logprobs.exp() * (reference_logprobs - logprobs)).sum(-1)
    mask = batch.labels[:, 1:] != IGNORE_INDEX
    per_token = per_token * mask
    if reduction == "token":
        return per_token.sum() / mask.sum().clamp(min=1)
    return per_token.sum(-1).mean()


def npo_term(model, reference, forget: Batch, beta: float) -> torch.Tensor:
    """NPO: (2/beta) E[log(1 + (pi_theta/pi_ref)^beta)] = -(2/beta) E[log sigmoid(-beta log ratio)]."""
    with torch.no_grad():
        reference_logprob = sequence_logprob(reference, forget)
    log_ratio = sequence_logprob(model, forget) - reference_logprob
    return -(2.0 / beta) * F.logsigmoid(-beta * log_ratio).mean()


# --------------------------------------------------------------------------- methods
# NPO's log-likelihoods are sums over a sequence's tokens, so the NPO variants sum their retain
# terms the same way (per sequence, then averaged); a token-mean retain term would be about
# sequence-length times too weak next to them.


@register("ga")
def gradient_ascent(model, forget: Batch, retain, reference, hp) -> torch.Tensor:
    """GA: minus the fine-tuning loss on the forget batch."""
    return -mean_nll(model, forget)


@register("ga_gd", uses_retain=True, **{"lambda": 1.0})
def gradient_difference(model, forget: Batch, retain: Batch, reference, hp) -> torch.Tensor:
    """GA plus lambda times the fine-tuning loss on a retain batch."""
    return -mean_nll(model, forget) + hp["lambda"] * retain_nll(model, retain)


@register("ga_kl", uses_reference=True, uses_retain=True, **{"lambda": 1.0})
def gradient_ascent_kl(model, forget: Batch, retain: Batch, reference, hp) -> torch.Tensor:
    """GA plus lambda times KL(p_ref || p_theta) on a retain batch (a true KL, not a CE)."""
    return -mean_nll(model, forget) + hp["lambda"] * retain_kl(model, reference, retain)


@register("npo", uses_reference=True, beta=0.1)
def npo(model, forget: Batch, retain, reference, hp) -> torch.Tensor:
    """Negative preference optimisation (Zhang et al. 2024) against the frozen reference."""
    return npo_term(model, reference, forget, hp["beta"])


@register("npo_gd", uses_reference=True, uses_retain=True, beta=0.1, **{"lambda": 1.0})
def npo_gradient_difference(model, forget: Batch, retain: Batch, reference, hp) -> torch.Tensor:
    return npo_term(model, reference, forget, hp["beta"]) + hp["lambda"] * retain_nll(model, retain, "sequence")


@register("npo_kl", uses_reference=True, uses_retain=True, beta=0.1, **{"lambda": 1.0})
def npo_kl(model, forget: Batch, retain: Batch, reference, hp) -> torch.Tensor:
    return npo_term(model, reference, forget, hp["beta"]) + hp["lambda"] * retain_kl(
        model, reference, retain, "sequence")


@register("rlabel")
def random_label(model, forget: Batch, retain, reference, hp) -> torch.Tensor:
    """RLabel: fine-tune the forget tokens towards uniformly random labels (pads stay masked)."""
    logits = logits_of(model, forget)
    labels = random_labels(forget.labels, logits.shape[-1])
    return F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), labels[:, 1:].flatten(),
                           ignore_index=IGNORE_INDEX)


def random_labels(labels: torch.Tensor, vocab_size: int) -> torch.Tensor:
    """Uniform token ids where `labels` has a target, IGNORE_INDEX where it has none."""
    drawn = torch.randint(vocab_size, labels.shape, device=labels.device)
    return drawn.masked_fill(labels == IGNORE_INDEX, IGNORE_INDEX)


@register("simnpo", beta=2.5, gamma=0.0)
def simnpo(model, forget: Batch, retain, reference, hp) -> torch.Tensor:
    """SimNPO (Fan et al. 2024): reference-free, length-normalised NPO,
    -(2/beta) E[log sigmoid(-(beta/|y|) log pi_theta(y|x) - gamma)]."""
    lengths = (forget.labels[:, 1:] != IGNORE_INDEX).sum(-1).clamp(min=1)
    normalised = sequence_logprob(model, forget) / lengths
    return -(2.0 / hp["beta"]) * F.logsigmoid(-hp["beta"] * normalised - hp["gamma"]).mean()


@register("finetune", uses_retain=True)
def finetune_baseline(model, forget, retain: Batch, reference, hp) -> torch.Tensor:
    """Not an unlearning method: ordinary fine-tuning on the baseline's data (retain by default)
    with the unlearning budget, to see how far plain training moves the representations."""
    return mean_nll(model, retain)


def get_method(name: str) -> Method:
    if name not in METHODS:
        raise KeyError(f"unknown unlearning method {name!r}; known: {', '.join(sorted(METHODS))}")
    return METHODS[name]


def hyperparameters(name: str, configured: Mapping[str, Any] | None) -> dict[str, Any]:
    """The method's defaults overridden by the config's `methods.<name>` entry."""
    return {**get_method(name).defaults, **(configured or {})}
