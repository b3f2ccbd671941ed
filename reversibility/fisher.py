"""Diagonal Fisher information per decoder layer, from vectorised per-sample gradients.

F_j = (1/n) sum_i (d l_i / d theta_j)^2, where l_i is sample i's mean negative log-likelihood
over its real (non-pad) target tokens: the mean of squared per-sample gradients, not the square
of the batch-mean gradient. Computed in float32, a chunk of samples per forward and backward
pass, with closed-form per-sample gradients of linear and RMSNorm layers.

Parameters are grouped by exact module path: layer `model.layers.1` owns the parameters whose
names start with `model.layers.1.` (with the dot, so layers 10-19 are not pooled into layer 1).

Padding: sequences are right-padded and fed without an attention mask. Under causal attention a
pad after the last real token cannot change the logits of the real positions, and pad targets
are masked out of the loss, so each sample's gradient is exactly its unpadded gradient.
"""

from __future__ import annotations

import numbers
from typing import Sequence

import numpy as np
import torch

from .fisher_histograms import BINS, histogram_distance  # noqa: F401  (re-exported)
from .tokenization import IGNORE_INDEX, collate


def decoder_layer_paths(model) -> list[str]:
    names = {id(module): name for name, module in model.named_modules()}
    return [names[id(layer)] for layer in model.get_decoder().layers]


def layer_parameters(model, path: str) -> dict[str, torch.nn.Parameter]:
    prefix = f"{path}."
    return {name: p for name, p in model.named_parameters() if name.startswith(prefix)}


def diagonal_fisher(
    model, sequences: Sequence[Sequence[int]], pad_id: int, layers: Sequence[str], chunk_size: int = 8
) -> dict[str, dict[str, torch.Tensor]]:
    """For each layer path, the Fisher diagonal of each of its parameters (float32, on CPU), over
    all `sequences` (see `fisher_prefixes`)."""
    return fisher_prefixes(model, sequences, pad_id, layers, [len(sequences)], chunk_size)[len(sequences)]


def fisher_prefixes(
    model,
    sequences: Sequence[Sequence[int]],
    pad_id: int,
    layers: Sequence[str],
    counts: Sequence[int],
    chunk_size: int = 8,
) -> dict[int, dict[str, dict[str, torch.Tensor]]]:
    """For each count c, the Fisher diagonal over the first c sequences (float32, on CPU), per layer
    path and parameter, as `diagonal_fisher(model, sequences[:c], ...)` gives it, from one pass over
    the first max(counts) sequences: chunks end at every count, where the running sums are read.

    One forward and one backward pass per chunk of samples give every sample's gradient with
    respect to the inputs and outputs of each module (samples do not interact, so the gradient
    of the summed per-sample losses is each sample's own gradient there); per-sample parameter
    gradients follow in closed form: a linear layer's is sum_t g_t a_t^T (the outer-product
    trick), its bias's sum_t g_t, an RMSNorm weight's sum_t g_t * x_t / rms(x_t).
    """
    stops = _validated_counts(counts, len(sequences))
    bounds = _chunk_bounds(stops, chunk_size)
    device = next(model.parameters()).device
    modules = {name: module for name, module in model.named_modules()}
    owned = {path: layer_parameters(model, path) for path in layers}
    handlers = {}
    for group in owned.values():
        for name in group:
            module_name, _ = name.rsplit(".", 1)
            handlers[module_name] = modules[module_name]
    for module_name, module in handlers.items():
        if not (isinstance(module, torch.nn.Linear) or _is_rms_norm(module)):
            raise NotImplementedError(
                f"Fisher: no per-sample gradient rule for {module_name} ({type(module).__name__})"
            )
    totals = {name: torch.zeros_like(p, dtype=torch.float32) for group in owned.values() for name, p in group.items()}
    hooks = [
        module.register_forward_hook(_on_output_gradient(_accumulate(totals, name, module)))
        for name, module in handlers.items()
    ]
    requires = {name: p.requires_grad for name, p in model.named_parameters()}
    embeddings = model.get_input_embeddings()
    hooks.append(embeddings.register_forward_hook(lambda _m, _i, out: out.requires_grad_(True)))
    was_training = model.training
    model.eval()
    prefixes = {}
    try:
        model.requires_grad_(False)  # activation gradients only; parameter gradients come from the rules
        for start, stop in bounds:
            batch = collate(sequences[start:stop], pad_id).to(device)
            logits = model(input_ids=batch.input_ids).logits[:, :-1].float()
            targets = batch.labels[:, 1:]
            nll = torch.nn.functional.cross_entropy(
                logits.transpose(1, 2), targets, ignore_index=IGNORE_INDEX, reduction="none"
            )  # 0 at pad targets
            per_sample = nll.sum(1) / (targets != IGNORE_INDEX).sum(1).clamp(min=1)
            per_sample.sum().backward()
            if stop in stops:
                prefixes[stop] = {
                    path: {name: (totals[name] / stop).cpu() for name in group} for path, group in owned.items()
                }
    finally:
        for hook in hooks:
            hook.remove()
        for name, p in model.named_parameters():
            p.requires_grad_(requires[name])
        model.train(was_training)
    return {count: prefixes[count] for count in counts}


def _validated_counts(counts: Sequence[int], available: int) -> list[int]:
    """The distinct counts, ascending; each must be a whole number of samples we have."""
    if len(counts) == 0:
        raise ValueError("Fisher: no sample counts requested")
    for count in counts:
        if isinstance(count, bool) or not isinstance(count, numbers.Integral) or not 1 <= count <= available:
            raise ValueError(
                f"Fisher: sample count {count!r} is not between 1 and {available}, the number of sequences"
            )
    return sorted(set(counts))


def _chunk_bounds(stops: Sequence[int], chunk_size: int) -> list[tuple[int, int]]:
    """(start, stop) of chunks of at most `chunk_size` samples from 0 to the last stop, none of
    them straddling a stop (so that the sums can be read there)."""
    if chunk_size < 1:
        raise ValueError(f"Fisher: chunk_size must be at least 1, got {chunk_size}")
    bounds, start = [], 0
    for stop in stops:
        while start < stop:
            bounds.append((start, min(start + chunk_size, stop)))
            start = bounds[-1][1]
    return bounds


def _is_rms_norm(module) -> bool:
    return type(module).__name__.endswith("RMSNorm") and hasattr(module, "variance_epsilon")


def _on_output_gradient(rule):
    """A forward hook that keeps the module's input and calls `rule(input, output gradient)` when
    the backward pass reaches the output (a tensor hook: cheaper than a module backward hook)."""

    def hook(_module, args, output):
        x = args[0].detach()
        output.register_hook(lambda grad: rule(x, grad))

    return hook


def _accumulate(totals: dict, name: str, module):
    def rule(x, grad_output):
        g, x = grad_output.float(), x.float()  # [B, T, out], [B, T, in]: each sample's own
        if isinstance(module, torch.nn.Linear):
            _add_squared_outer_products(totals[f"{name}.weight"], g, x)
            if module.bias is not None:
                totals[f"{name}.bias"] += g.sum(1).square().sum(0)
        else:
            normalised = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + module.variance_epsilon)
            totals[f"{name}.weight"] += (g * normalised).sum(1).square().sum(0)

    return rule


def _add_squared_outer_products(total: torch.Tensor, g: torch.Tensor, x: torch.Tensor) -> None:
    """total += sum_b (g_b^T x_b)^2: each sample's weight gradient from one batched matmul, squared
    in place, a block of samples at a time."""
    rows = _block_rows(g.device, total.numel())
    for start in range(0, g.shape[0], rows):
        per_sample = torch.bmm(g[start : start + rows].transpose(1, 2), x[start : start + rows])
        total += per_sample.square_().sum(0)


GPU_BLOCK_BYTES = 1 << 30


def _block_rows(device: torch.device, weight_size: int) -> int:
    """Samples per block of per-sample weight gradients: on a CPU a few, so that the block stays
    in cache (8 measured fastest); on a GPU as many as fit in `GPU_BLOCK_BYTES`, so that each
    launch has enough work."""
    if device.type == "cpu":
        return 8
    return max(1, GPU_BLOCK_BYTES // (4 * weight_size))


def loop_fisher(
    model, sequences: Sequence[Sequence[int]], pad_id: int, layers: Sequence[str]
) -> dict[str, dict[str, torch.Tensor]]:
    """The same Fisher with one backward pass per sample (the reference for tests and benches)."""
    device = next(model.parameters()).device
    params = {path: layer_parameters(model, path) for path in layers}
    totals = {name: torch.zeros_like(p, dtype=torch.float32) for group in params.values() for name, p in group.items()}
    for sequence in sequences:
        batch = collate([sequence], pad_id).to(device)
        model.zero_grad(set_to_none=True)
        logits = model(input_ids=batch.input_ids).logits[0, :-1].float()
        targets = batch.labels[0, 1:]
        loss = torch.nn.functional.cross_entropy(logits, targets, ignore_index=IGNORE_INDEX)
        loss.backward()
        for group in params.values():
            for name, p in group.items():
                totals[name] += p.grad.float().square()
    model.zero_grad(set_to_none=True)
    return {path: {name: totals[name] / len(sequences) for name in group} for path, group in params.items()}


def summarise(fisher: dict[str, dict[str, torch.Tensor]]) -> dict[str, dict]:
    """Per layer: the histogram of its Fisher values on `BINS`, zeros below the first bin, and
    the total Fisher mass."""
    summary = {}
    for path, group in fisher.items():
        values = torch.cat([v.flatten() for v in group.values()]).double().numpy()
        counts, _ = np.histogram(np.minimum(values[values >= BINS[0]], BINS[-1]), bins=BINS)
        summary[path] = {
            "histogram": counts.astype(np.int64),
            "below_range": int((values < BINS[0]).sum()),
            "mass": float(values.sum()),
            "parameters": int(values.size),
        }
    return summary
