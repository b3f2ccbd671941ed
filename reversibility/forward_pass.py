"""What a forward pass reads out of a model: every layer's pooled features and the per-token
statistics that the token-level metrics need, one pass per batch (the capture stage writes them
with `activations.write_capture`), and token accuracy.

Layers are the decoder's embedding output, each decoder layer's output and the final norm's
output, named by exact module path (`model.layers.3`). Pooling is done inside the forward hooks,
so token-level states are never all held in memory: `mean` averages over real (non-pad) tokens,
`last` takes the last real token. Token statistics per target position: the target's
log-probability, whether the argmax was right, and the mean and standard deviation of log p under
the model's own distribution (Min-K%++ needs them).
"""

from __future__ import annotations

from typing import Sequence

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


def pooling_weights(mask: torch.Tensor, pooling: str) -> torch.Tensor:
    """[B, T] weights over positions whose weighted sum of states is the pooled feature: 1/n on
    each of n real tokens for `mean`, one-hot on the last real token for `last`."""
    mask = mask.float()
    if pooling == "mean":
        return mask / mask.sum(1, keepdim=True).clamp(min=1)
    if pooling == "last":
        last = mask.long().sum(1).clamp(min=1) - 1
        return torch.nn.functional.one_hot(last, mask.shape[1]).float()
    raise ValueError(f"unknown pooling {pooling!r}; known: {', '.join(POOLINGS)}")


def pool(hidden: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """[B, T, H] states and [B, T] pooling weights -> [B, H] float32 features, in one batched
    matmul (one kernel per layer: on a GPU a small model's forward pass is launch-bound)."""
    return torch.bmm(weights.unsqueeze(1), hidden.float()).squeeze(1)


def token_statistics(logits: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per next-token statistics, [B, T-1] each, zero where there is no real target."""
    targets = labels[:, 1:]
    mask = targets != IGNORE_INDEX
    logprobs = torch.log_softmax(logits[:, :-1][mask].float(), dim=-1)  # real targets only
    real = targets[mask]
    probs = logprobs.exp()
    mu = (probs * logprobs).sum(-1)
    # The spread about the mean, not E[l^2] - mu^2: that difference of two numbers near
    # (log V)^2 loses most of float32's digits when the prediction is flat.
    sigma = (probs * (logprobs - mu.unsqueeze(-1)).square()).sum(-1).sqrt()
    values = {
        "logprob": logprobs.gather(-1, real.unsqueeze(-1)).squeeze(-1),
        "correct": logprobs.argmax(-1) == real,
        "mu": mu,
        "sigma": sigma,
    }
    stats = {"mask": mask}
    for name, value in values.items():
        full = torch.zeros(mask.shape, dtype=value.dtype, device=value.device)
        full[mask] = value
        stats[name] = full
    return stats


@torch.no_grad()
def capture_split(
    model,
    sequences: Sequence[Sequence[int]],
    pad_id: int,
    batch_size: int,
    pooling: str,
    max_length: int,
    device,
    keep_states: int = 0,
    with_stats: bool = True,
) -> dict[str, object]:
    """Pooled features of every layer, token statistics and (for the first `keep_states`
    samples) token-level states, for one split.

    No hook waits for a GPU (a copy to the host there would stall every layer of the forward
    pass): results stay on the device until their batch is done, then go to the host by
    asynchronous copies, waited for once at the end."""
    modules = layer_modules(model)
    pooled: list[torch.Tensor] = []  # [layers, batch, hidden] per batch
    states: list[list[torch.Tensor]] = [[] for _ in modules]
    stats: dict[str, list[torch.Tensor]] = {name: [] for name in TOKEN_STATS}
    current: dict[str, object] = {}

    def hook(index):
        def fn(_module, _inputs, output):
            hidden = output[0] if isinstance(output, tuple) else output
            current["pooled"][index] = pool(hidden, current["weights"])
            keep = current["keep"]
            if keep:
                kept = hidden[:keep].float() * current["mask"][:keep, :, None]
                states[index].append(_to_host(_pad_to(kept, max_length, dim=1)))

        return fn

    handles = [module.register_forward_hook(hook(k)) for k, (_, module) in enumerate(modules)]
    try:
        for start, batch in zip(range(0, len(sequences), batch_size), batches(sequences, batch_size, pad_id)):
            batch = batch.to(device)
            current["mask"] = batch.attention_mask.bool()
            current["weights"] = pooling_weights(current["mask"], pooling)
            current["keep"] = max(0, min(keep_states - start, len(batch)))
            current["pooled"] = [None] * len(modules)
            logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
            pooled.append(_to_host(torch.stack(current["pooled"])))
            for name, value in (token_statistics(logits, batch.labels) if with_stats else {}).items():
                stats[name].append(_to_host(_pad_to(value, max_length - 1, dim=1)))
    finally:
        for handle in handles:
            handle.remove()
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)  # every asynchronous copy has landed
    return {
        "features": [torch.cat([batch[index] for batch in pooled]).numpy() for index in range(len(modules))],
        "stats": {name: torch.cat(chunks).numpy() for name, chunks in stats.items() if chunks},
        "states": [torch.cat(chunks).numpy() for chunks in states] if keep_states else [],
    }


def _pad_to(tensor: torch.Tensor, length: int, dim: int) -> torch.Tensor:
    """Zero-pad `dim` up to `length` (batches are padded to their own longest sequence)."""
    shape = list(tensor.shape)
    shape[dim] = length
    full = tensor.new_zeros(shape)
    full.narrow(dim, 0, tensor.shape[dim]).copy_(tensor)
    return full


def _to_host(tensor: torch.Tensor) -> torch.Tensor:
    """An asynchronous copy to (pinned) host memory from a GPU; the tensor itself on a CPU."""
    return tensor.to("cpu", non_blocking=True)


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
