"""Unlearning methods: one small loss each, registered by name.

A method's loss sees the model being trained, the forget batch, a retain batch (when the method
uses one), the frozen reference model (when it uses one) and its hyperparameters from the
config. The loop, optimiser and saving are shared (training.py).

Every term counts real (non-pad) target tokens only, and is the one its paper defines:
cross-entropies and KL(p_ref || p_theta) are means over a batch's real target tokens (a model's
own `.loss`, as the NPO and SimNPO authors' code and OpenUnlearning compute their retain terms);
NPO's log-likelihoods are sums over a sequence's target tokens, as in the NPO paper, SimNPO's
are those sums divided by the sequence's number of targets, and both are averaged over
sequences; RMU's squared distances between hidden states are means over a batch's real tokens
(every position, a sequence's first included) and hidden dimensions. Under gradient accumulation
a mean divides by the optimiser step's total count for its role (forget or retain;
Batch.step_targets, step_sequences), so k micro-batches give exactly the gradient of one batch
holding all their sequences. Adding a method is one function and one `@register` line.
"""

from __future__ import annotations

import functools
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


def targets_in_step(batch: Batch, mask: torch.Tensor) -> torch.Tensor | int:
    """What a token mean divides by: the real targets of the whole optimiser step when the batch
    is one of several accumulated micro-batches, else its own (at least one)."""
    if batch.step_targets is not None:
        return max(batch.step_targets, 1)
    return mask.sum().clamp(min=1)


def tokens_in_step(batch: Batch, mask: torch.Tensor) -> torch.Tensor | int:
    """What a mean over real tokens (every position, not only targets) divides by: the real tokens
    of the whole optimiser step under accumulation, else the batch's own (at least one). Sequences
    are right-padded and non-empty, so a step's real tokens are its targets plus one per sequence
    (a sequence's first token is no one's target)."""
    if batch.step_targets is not None:
        return max(batch.step_targets + batch.step_sequences, 1)
    return mask.sum().clamp(min=1)


def sequence_mean(values: torch.Tensor, batch: Batch) -> torch.Tensor:
    """Mean of per-sequence `values` over the sequences of the optimiser step (of the batch alone
    without accumulation)."""
    if batch.step_sequences is None:
        return values.mean()
    return values.sum() / batch.step_sequences


def token_mean_cross_entropy(logits: torch.Tensor, labels: torch.Tensor, batch: Batch) -> torch.Tensor:
    """Cross-entropy of next-token `logits` against `labels`, averaged over real targets."""
    inputs, targets = logits[:, :-1].flatten(0, 1).float(), labels[:, 1:].flatten()
    if batch.step_targets is None:
        return F.cross_entropy(inputs, targets, ignore_index=IGNORE_INDEX)
    summed = F.cross_entropy(inputs, targets, ignore_index=IGNORE_INDEX, reduction="sum")
    return summed / max(batch.step_targets, 1)


def mean_nll(model, batch: Batch) -> torch.Tensor:
    """Token-mean cross-entropy over non-pad targets (the fine-tuning loss, a model's `.loss`)."""
    return token_mean_cross_entropy(logits_of(model, batch), batch.labels, batch)


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


def retain_kl(model, reference, batch: Batch) -> torch.Tensor:
    """KL(p_ref || p_theta) of the next-token distributions on a retain batch, averaged over its
    real target positions (a true KL, not a cross-entropy against the reference)."""
    logprobs = torch.log_softmax(logits_of(model, batch)[:, :-1].float(), dim=-1)
    with torch.no_grad():
        reference_logprobs = torch.log_softmax(logits_of(reference, batch)[:, :-1].float(), dim=-1)
    per_token = (reference_logprobs.exp() * (reference_logprobs - logprobs)).sum(-1)
    mask = batch.labels[:, 1:] != IGNORE_INDEX
    return (per_token * mask).sum() / targets_in_step(batch, mask)


def npo_term(model, reference, forget: Batch, beta: float) -> torch.Tensor:
    """NPO: (2/beta) E[log(1 + (pi_theta/pi_ref)^beta)] = -(2/beta) E[log sigmoid(-beta log ratio)],
    with sequence log-likelihoods (sums over the real targets) and E the mean over sequences."""
    with torch.no_grad():
        reference_logprob = sequence_logprob(reference, forget)
    log_ratio = sequence_logprob(model, forget) - reference_logprob
    return -(2.0 / beta) * sequence_mean(F.logsigmoid(-beta * log_ratio), forget)


def simnpo_term(model, forget: Batch, beta: float, gamma: float) -> torch.Tensor:
    """SimNPO's forget term, -(2/beta) E[log sigmoid(-(beta/|y|) log pi_theta(y|x) - gamma)], with
    |y| a sequence's number of real targets and E the mean over sequences."""
    lengths = (forget.labels[:, 1:] != IGNORE_INDEX).sum(-1).clamp(min=1)
    normalised = sequence_logprob(model, forget) / lengths
    return -(2.0 / beta) * sequence_mean(F.logsigmoid(-beta * normalised - gamma), forget)


def decoder_layers(model) -> torch.nn.ModuleList:
    """The decoder layers of a causal LM, of a PEFT model around one, or of the reference that
    switches a PEFT model's adapter off (models.AdapterDisabled: the same layers)."""
    return getattr(model, "peft_model", model).get_decoder().layers


def layer_index(model, layer: Any, key: str) -> int:
    """`layer` as the index of one of the model's decoder layers, or a ValueError naming `key`."""
    count = len(decoder_layers(model))
    if isinstance(layer, bool) or not isinstance(layer, (int, float)) or not float(layer).is_integer():
        raise ValueError(f"{key}: {layer!r} is not a layer index; the model's decoder layers are 0 to {count - 1}")
    if not 0 <= int(layer) < count:
        raise ValueError(
            f"{key}: {layer!r} is not a decoder layer of this model, which has {count} layers (0 to {count - 1})"
        )
    return int(layer)


def layer_output(model, batch: Batch, layer: int) -> torch.Tensor:
    """[B, T, H] output of decoder layer `layer` (from 0) on the batch, read by a forward hook.

    Not `output_hidden_states`: transformers returns the last layer's output after the final norm.
    The whole forward pass runs (the logits are not used), which keeps sharded and PEFT models'
    own hooks intact.
    """
    captured: list[torch.Tensor] = []

    def keep(module, inputs, output):
        captured.append(output[0] if isinstance(output, tuple) else output)

    handle = decoder_layers(model)[layer].register_forward_hook(keep)
    try:
        model(input_ids=batch.input_ids, attention_mask=batch.attention_mask)
    finally:
        handle.remove()  # before the backward pass: gradient checkpointing reruns the layer there
    return captured[0]


def token_mean_squared_distance(states: torch.Tensor, targets: torch.Tensor, batch: Batch) -> torch.Tensor:
    """Sum over the batch's real tokens of ||states - targets||^2 / hidden size, divided by the
    step's real tokens (tokens_in_step): torch's mse_loss restricted to real tokens. `targets` is
    [B, T, H] or one [H] vector for every token. Pads are left out before subtracting, so a
    non-finite pad state reaches neither the value nor the gradient."""
    mask = batch.attention_mask.bool()
    real = states[mask].float()
    targets = targets[mask].float() if targets.dim() == states.dim() else targets.float()
    return (real - targets).pow(2).mean(-1).sum() / tokens_in_step(batch, mask)


@functools.lru_cache(maxsize=None)
def random_direction(hidden_size: int, seed: int) -> torch.Tensor:
    """RMU's fixed random unit vector u: uniform in [0, 1) per coordinate, then normalised, drawn
    on the CPU from its own generator (the same vector on every step, device and run of a seed)."""
    drawn = torch.rand(hidden_size, generator=torch.Generator().manual_seed(seed))
    return drawn / drawn.norm()


# --------------------------------------------------------------------------- methods
# The retain terms are token means whatever the forget term, as the NPO and SimNPO authors and
# OpenUnlearning compute them, so that a published lambda means the same here.


@register("ga")
def gradient_ascent(model, forget: Batch, retain, reference, hp) -> torch.Tensor:
    """GA: minus the token-mean cross-entropy on the forget batch."""
    return -mean_nll(model, forget)


@register("ga_gd", uses_retain=True, **{"lambda": 1.0})
def gradient_difference(model, forget: Batch, retain: Batch, reference, hp) -> torch.Tensor:
    """GA + lambda x the token-mean cross-entropy on a retain batch."""
    return -mean_nll(model, forget) + hp["lambda"] * mean_nll(model, retain)


@register("ga_kl", uses_reference=True, uses_retain=True, **{"lambda": 1.0})
def gradient_ascent_kl(model, forget: Batch, retain: Batch, reference, hp) -> torch.Tensor:
    """GA + lambda x the token-mean KL(p_ref || p_theta) on a retain batch."""
    return -mean_nll(model, forget) + hp["lambda"] * retain_kl(model, reference, retain)


@register("npo", uses_reference=True, beta=0.1)
def npo(model, forget: Batch, retain, reference, hp) -> torch.Tensor:
    """Negative preference optimisation (Zhang et al. 2024) against the frozen reference."""
    return npo_term(model, reference, forget, hp["beta"])


@register("npo_gd", uses_reference=True, uses_retain=True, beta=0.1, **{"lambda": 1.0})
def npo_gradient_difference(model, forget: Batch, retain: Batch, reference, hp) -> torch.Tensor:
    """NPO + lambda x the token-mean cross-entropy on a retain batch (NPO+RT in Zhang et al.)."""
    return npo_term(model, reference, forget, hp["beta"]) + hp["lambda"] * mean_nll(model, retain)


@register("npo_kl", uses_reference=True, uses_retain=True, beta=0.1, **{"lambda": 1.0})
def npo_kl(model, forget: Batch, retain: Batch, reference, hp) -> torch.Tensor:
    """NPO + lambda x the token-mean KL(p_ref || p_theta) on a retain batch."""
    return npo_term(model, reference, forget, hp["beta"]) + hp["lambda"] * retain_kl(model, reference, retain)


@register("rlabel")
def random_label(model, forget: Batch, retain, reference, hp) -> torch.Tensor:
    """RLabel: token-mean cross-entropy towards uniformly random labels on the forget tokens
    (pads stay masked)."""
    logits = logits_of(model, forget)
    return token_mean_cross_entropy(logits, random_labels(forget.labels, logits.shape[-1]), forget)


def random_labels(labels: torch.Tensor, vocab_size: int) -> torch.Tensor:
    """Uniform token ids where `labels` has a target, IGNORE_INDEX where it has none."""
    drawn = torch.randint(vocab_size, labels.shape, device=labels.device)
    return drawn.masked_fill(labels == IGNORE_INDEX, IGNORE_INDEX)


# The SimNPO authors' TOFU config (OPTML-Group/Unlearn-Simple, TOFU/config/forget.yaml, forget05)
# has beta 2.5, gamma 0, and weights 0.1375 on the forget term and 1 on the token-mean retain NLL:
# lambda = 1 / 0.1375 with the forget term's weight 1 (AdamW's steps do not depend on the loss's
# overall scale, epsilon and clipping aside). OpenUnlearning's configs/trainer/SimNPO.yaml (beta
# 4.5, forget weight 0.125, retain 1) is the authors' forget10 setting. Both codes subtract their
# gamma (`delta` in OpenUnlearning) before multiplying by beta: the paper's gamma is beta times
# theirs, and at 0 they agree.
@register("simnpo", uses_retain=True, beta=2.5, gamma=0.0, **{"lambda": 1 / 0.1375})
def simnpo(model, forget: Batch, retain: Batch, reference, hp) -> torch.Tensor:
    """SimNPO (Fan et al. 2024): reference-free, length-normalised NPO plus a retain term,
    -(2/beta) E[log sigmoid(-(beta/|y|) log pi_theta(y|x) - gamma)] + lambda x the token-mean
    cross-entropy on a retain batch."""
    return simnpo_term(model, forget, hp["beta"], hp["gamma"]) + hp["lambda"] * mean_nll(model, retain)


# WMDP (Li et al. 2024, arXiv 2403.03218) unlearns Zephyr-7B at layer 7 with c = 6.5 and
# alpha = 1200 (centerforaisafety/wmdp, rmu/unlearn.py: `--layer_id 7 --steering_coeffs 6.5,6.5
# --alpha 1200,1200`). Their code trains only the MLP down-projections of layers 5-7 (`--layer_ids
# 5,6,7 --param_ids 6`) and its mse_loss averages over pad positions too; here every trainable
# weight trains (the shared loop) and the means count real tokens only. Their u is drawn from the
# global RNG; here from `seed`, so that it does not depend on what drew before it. A model with
# fewer than 8 decoder layers needs `methods: {rmu: {layer: ...}}`.
@register("rmu", uses_reference=True, uses_retain=True, layer=7, steering_coefficient=6.5, alpha=1200.0, seed=0)
def rmu(model, forget: Batch, retain: Batch, reference, hp) -> torch.Tensor:
    """RMU (representation misdirection): the mean squared distance between decoder layer
    `layer`'s output on the forget tokens and c u (c the steering coefficient, u a fixed random
    unit vector drawn from `seed`), plus alpha x the mean squared distance between that layer's
    outputs under the model and under the frozen reference on the retain tokens. Both are means
    over real tokens and hidden dimensions (||.||^2 / hidden size, averaged over tokens)."""
    layer = layer_index(model, hp["layer"], "methods.rmu.layer")
    states = layer_output(model, forget, layer)
    control = hp["steering_coefficient"] * random_direction(states.shape[-1], int(hp["seed"])).to(states.device)
    forget_term = token_mean_squared_distance(states, control, forget)
    with torch.no_grad():
        reference_states = layer_output(reference, retain, layer)
    retain_term = token_mean_squared_distance(layer_output(model, retain, layer), reference_states, retain)
    return forget_term + hp["alpha"] * retain_term


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
