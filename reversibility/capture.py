"""Activation capture: one forward pass per batch gives every layer's pooled features and the
per-token statistics that the token-level metrics need (written by `activations.write_capture`).

Layers are the decoder's embedding output, each decoder layer's output and the final norm's
output, named by exact module path (`model.layers.3`). Pooling is done inside the forward hooks,
so token-level states are never all held in memory: `mean` averages over real (non-pad) tokens,
`last` takes the last real token. Token statistics per target position: the target's
log-probability, whether the argmax was right, and the mean and standard deviation of log p under
the model's own distribution (Min-K%++ needs them).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from .tokenization import IGNORE_INDEX, batches

POOLINGS = ("mean", "last")
TOKEN_STATS = ("logprob", "correct", "mask", "mu", "sigma")


def layer_modules(model) -> list[tuple[str, torch.nn.Module]]:
    """(module path, module) for the embeddings, every decoder layer and the final norm."""
    decoder = model.get_decoder()
    names = {id(module): name for name, module in model.named_modules()}
    modules = [decoder.embed_tokens, *decoder.layers, decoder.norm]
    return [(names[id(m)], m) for m in modules]


def pool(hidden: torch.Tensor, mask: torch.Tensor, pooling: str) -> torch.Tensor:
    """[B, T, H] states and a [B, T] mask of real tokens -> [B, H] float32 features."""
    hidden = hidden.float()
    if pooling == "mean":
        weights = mask.unsqueeze(-1).float()
        return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1)
    if pooling == "last":
        last = mask.long().sum(1).clamp(min=1) - 1
        return hidden[torch.arange(hidden.shape[0]), last]
    raise ValueError(f"unknown pooling {pooling!r}; known: {', '.join(POOLINGS)}")


def token_statistics(logits: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per next-token statistics, [B, T-1] each, zero where there is no real target."""
    targets = labels[:, 1:]
    mask = targets != IGNORE_INDEX
    logprobs = torch.log_softmax(logits[:, :-1][mask].float(), dim=-1)   # real targets only
    real = targets[mask]
    probs = logprobs.exp()
    mu = (probs * logprobs).sum(-1)
    sigma = ((probs * logprobs.square()).sum(-1) - mu.square()).clamp(min=0).sqrt()
    values = {"logprob": logprobs.gather(-1, real.unsqueeze(-1)).squeeze(-1),
              "correct": logprobs.argmax(-1) == real, "mu": mu, "sigma": sigma}
    stats = {"mask": mask}
    for name, value in values.items():
        full = torch.zeros(mask.shape, dtype=value.dtype, device=value.device)
        full[mask] = value
        stats[name] = full
    return stats


@torch.no_grad()
def capture_split(model, sequences: Sequence[Sequence[int]], pad_id: int, batch_size: int, pooling: str,
                  max_length: int, device, keep_states: int = 0, with_stats: bool = True) -> dict[str, object]:
    """Pooled features of every layer, token statistics and (for the first `keep_states`
    samples) token-level states, for one split."""
    modules = layer_modules(model)
    pooled: list[list[torch.Tensor]] = [[] for _ in modules]
    states: list[list[torch.Tensor]] = [[] for _ in modules]
    stats: dict[str, list[torch.Tensor]] = {name: [] for name in TOKEN_STATS}
    current: dict[str, object] = {}

    def hook(index):
        def fn(_module, _inputs, output):
            hidden = output[0] if isinstance(output, tuple) else output
            pooled[index].append(pool(hidden, current["mask"], pooling).cpu())
            keep = current["keep"]
            if keep:
                full = torch.zeros((keep, max_length, hidden.shape[-1]), dtype=torch.float32)
                full[:, : hidden.shape[1]] = (hidden[:keep].float() * current["mask"][:keep, :, None]).cpu()
                states[index].append(full)
        return fn

    handles = [module.register_forward_hook(hook(k)) for k, (_, module) in enumerate(modules)]
    try:
        for start, batch in zip(range(0, len(sequences), batch_size), batches(sequences, batch_size, pad_id)):
            batch = batch.to(device)
            current["mask"] = batch.attention_mask.bool()
            current["keep"] = max(0, min(keep_states - start, len(batch)))
            logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
            for name, value in (token_statistics(logits, batch.labels) if with_stats else {}).items():
                padded = torch.zeros((value.shape[0], max_length - 1), dtype=value.dtype)
                padded[:, : value.shape[1]] = value.cpu()
                stats[name].append(padded)
    finally:
        for handle in handles:
            handle.remove()
    return {"features": [torch.cat(chunks).numpy() for chunks in pooled],
            "stats": {name: torch.cat(chunks).numpy() for name, chunks in stats.items() if chunks},
            "states": [torch.cat(chunks).numpy() for chunks in states] if keep_states else []}


@torch.no_grad()
def token_accuracy(model, sequences: Sequence[Sequence[int]], pad_id: int, batch_size: int) -> dict[str, int]:
    """Teacher-forced argmax hits and real targets over `sequences` (for curves during training)."""
    device = next(model.parameters()).device
    correct = tokens = 0
    for batch in batches(sequences, batch_size, pad_id):
        batch = batch.to(device)
        logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits[:, :-1]
        targets = batch.labels[:, 1:]
        mask = targets != IGNORE_INDEX
        correct += int(((logits.argmax(-1) == targets) & mask).sum())
        tokens += int(mask.sum())
    return {"correct": correct, "tokens": tokens}
