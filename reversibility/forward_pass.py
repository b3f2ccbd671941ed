"""What a forward pass reads out of a model: every layer's pooled features and the per-token
statistics that the token-level metrics need, one pass per batch (the capture stage writes them
with `activations.write_capture`), and token accuracy.

Layers are the decoder's embedding output, each decoder layer's output and the final norm's
output, named by exact module path (`model.layers.3`). Pooling is done inside the forward hooks,
so token-level states are never all held in memory: `mean` averages over real (non-pad) tokens,
`last` takes the last real token. Token statistics per target position: the target's
log-probability, whether the argmax was right, and the mean and standard deviation of log p under
the model's own distribution (Min-K%++ needs them).

The logit lens (nostalgebraist 2020; Patil et al. 2023 read "deleted" facts from intermediate
layers this way) reads every layer's token states through the model's own output: the final norm,
then the output head (and the final-logit soft cap or scale of the models that have one), as if
the layer were the last. Per sample and layer it keeps three sums over real next-token targets:
argmax hits, target log-probabilities (float32 log-softmax) and the number of targets. The final
norm's readout is the model's own output: the sums of its token statistics (the norm is not
applied twice); so is the last decoder layer's, whose output the final norm and the head turn into
the model's logits: it is copied, not computed again.
Logits are formed only at real target positions, a chunk of positions at a time, and reduced at
once, so no [batch, tokens, vocabulary] tensor of a layer outlives its chunk.
"""

from __future__ import annotations

from typing import Sequence

import torch

from .tokenization import IGNORE_INDEX, batches

POOLINGS = ("mean", "last")
TOKEN_STATS = ("logprob", "correct", "mask", "mu", "sigma")
LENS_STATS = ("correct", "logprob", "targets")
LENS_CHUNK = 128  # target positions whose [chunk, vocabulary] logits are formed together on a CPU
LENS_GPU_BYTES = 1 << 30  # on a GPU as many as fit in this many bytes of float32 logits


def layer_modules(model) -> list[tuple[str, torch.nn.Module]]:
    """(module path, module) for the embeddings, every decoder layer and the final norm."""
    decoder = model.get_decoder()
    names = {id(module): name for name, module in model.named_modules()}
    modules = [decoder.embed_tokens, *decoder.layers, decoder.norm]
    return [(names[id(m)], m) for m in modules]


def readout_head(model):
    """token states [n, hidden] -> the logits the model's own output would give them: the output
    head (`get_output_embeddings()`, whether or not it is tied to the input embeddings), then the
    final-logit transform of the configs that declare one: Cohere's `logit_scale` (a product),
    Granite's `logits_scaling` (a quotient), Gemma 2/3's `final_logit_softcapping` (cap x tanh(l /
    cap)). Llama and Qwen2 have none. Modules are called through `forward`, so that no capture
    hook fires for a readout."""
    head = model.get_output_embeddings()
    if head is None:
        raise ValueError(f"{type(model).__name__} has no output head (get_output_embeddings): no logit lens")
    config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    scale = getattr(config, "logit_scale", None)
    divisor = getattr(config, "logits_scaling", None)
    cap = getattr(config, "final_logit_softcapping", None)

    def logits_of(states: torch.Tensor) -> torch.Tensor:
        logits = head.forward(states)
        if scale is not None:
            logits = logits * scale
        if divisor is not None:
            logits = logits / divisor
        if cap is not None:
            logits = torch.tanh(logits / cap) * cap
        return logits

    return logits_of


def lens_readout(
    states: torch.Tensor, targets: torch.Tensor, rows: torch.Tensor, n_rows: int, logits_of, chunk: int = LENS_CHUNK
) -> torch.Tensor:
    """Per-row sums [3, n_rows] (argmax hits, target log-probability, targets) of the readout of
    `states` [n, hidden] (or of logits, with `logits_of` the identity) at their `targets` [n],
    `rows` [n] naming each position's sample. Float32 log-softmax; one [chunk, vocabulary] block
    of logits at a time."""
    sums = torch.zeros(3, n_rows, dtype=torch.float32, device=states.device)
    for start in range(0, len(states), chunk):
        logits = logits_of(states[start : start + chunk]).float()
        target = targets[start : start + chunk]
        # One pass gives the maximum and the argmax (the first one, as argmax's), a second the
        # log-sum-exp about it: torch.logsumexp and a separate argmax cost twice as much on a CPU.
        top, best = logits.max(-1)
        logsumexp = top + (logits - top.unsqueeze(-1)).exp_().sum(-1).log_()
        hit = best == target
        logprob = logits.gather(-1, target.unsqueeze(-1)).squeeze(-1) - logsumexp
        index = rows[start : start + chunk]
        sums[0].index_add_(0, index, hit.float())
        sums[1].index_add_(0, index, logprob)
        sums[2].index_add_(0, index, torch.ones_like(logprob))
    return sums


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
    matmul (one kernel per layer: on a GPU a small model's forward pass is launch-bound), in
    float32 also under autocast."""
    with torch.autocast(hidden.device.type, enabled=False):
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
    logit_lens: bool = False,
) -> dict[str, object]:
    """Pooled features of every layer, token statistics, (for the first `keep_states` samples)
    token-level states and, with `logit_lens`, every layer's logit-lens sums per sample
    (`lens`: {"correct", "logprob", "targets"}, each [samples, layers]), for one split.

    No hook waits for a GPU (a copy to the host there would stall every layer of the forward
    pass): results stay on the device until their batch is done, then go to the host by
    asynchronous copies, waited for once at the end."""
    modules = layer_modules(model)
    pooled: list[torch.Tensor] = []  # [layers, batch, hidden] per batch
    states: list[list[torch.Tensor]] = [[] for _ in modules]
    stats: dict[str, list[torch.Tensor]] = {name: [] for name in TOKEN_STATS}
    current: dict[str, object] = {}
    lens: list[torch.Tensor] = []  # [layers, 3, batch] per batch
    if logit_lens:
        head, norm = readout_head(model), model.get_decoder().norm
        normed_head = lambda hidden: head(norm.forward(hidden))  # noqa: E731
        # On a CPU a small block stays in cache; on a GPU a large one saves kernel launches.
        chunk = LENS_CHUNK
        if torch.device(device).type != "cpu":
            chunk = max(LENS_CHUNK, LENS_GPU_BYTES // (4 * model.get_output_embeddings().weight.shape[0]))
    last = len(modules) - 1  # the final norm: its readout is the model's own logits
    last_decoder = last - 1  # the norm and the head make its output those logits: the same readout

    def hook(index):
        def fn(_module, _inputs, output):
            hidden = output[0] if isinstance(output, tuple) else output
            current["pooled"][index] = pool(hidden, current["weights"])
            if logit_lens and index < last_decoder:
                read = _at_targets(hidden, current["positions"])
                current["lens"][index] = lens_readout(read, *current["lens_targets"], normed_head, chunk)
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
            if logit_lens:
                # Real target positions, found once per batch before the forward pass (the hooks
                # then gather with them without waiting for a GPU).
                targets = batch.labels[:, 1:]
                positions = (targets != IGNORE_INDEX).flatten().nonzero().squeeze(1)
                current["positions"] = positions
                current["lens_targets"] = (targets.flatten()[positions], positions // targets.shape[1], len(batch))
                current["lens"] = [None] * len(modules)
            logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
            pooled.append(_to_host(torch.stack(current["pooled"])))
            batch_stats = token_statistics(logits, batch.labels) if with_stats else {}
            for name, value in batch_stats.items():
                stats[name].append(_to_host(_pad_to(value, max_length - 1, dim=1)))
            if logit_lens:
                if batch_stats:  # the model's own statistics, summed
                    sums = [batch_stats[name].float().sum(1) for name in ("correct", "logprob", "mask")]
                    current["lens"][last] = torch.stack(sums)
                else:
                    read = _at_targets(logits, current["positions"])
                    current["lens"][last] = lens_readout(read, *current["lens_targets"], lambda x: x, chunk)
                current["lens"][last_decoder] = current["lens"][last]
                lens.append(_to_host(torch.stack(current["lens"])))
    finally:
        for handle in handles:
            handle.remove()
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)  # every asynchronous copy has landed
    return {
        "features": [torch.cat([batch[index] for batch in pooled]).numpy() for index in range(len(modules))],
        "stats": {name: torch.cat(chunks).numpy() for name, chunks in stats.items() if chunks},
        "states": [torch.cat(chunks).numpy() for chunks in states] if keep_states else [],
        **({"lens": _lens_arrays(lens, len(modules))} if logit_lens else {}),
    }


def _lens_arrays(lens: list[torch.Tensor], n_layers: int) -> dict:
    """Per-batch [layers, 3, batch] sums -> {"correct", "logprob", "targets"}: [samples, layers]."""
    stacked = torch.cat(lens, dim=2) if lens else torch.zeros(n_layers, 3, 0)
    return {name: stacked[:, k].T.contiguous().numpy() for k, name in enumerate(LENS_STATS)}


def _at_targets(values: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """[B, T, D] per-position values -> [n, D] at the positions that predict a real target (flat
    indices into [B, T - 1])."""
    return values[:, :-1].reshape(-1, values.shape[-1]).index_select(0, positions)


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
