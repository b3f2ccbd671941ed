"""Training throughput of the shared loop against a bare PyTorch loop, in one process.

Both train copies of the same tiny model on the same batches with AdamW and gradient clipping;
runs alternate (bare, ours, bare, ours, ...) so that machine noise hits both. Prints tokens per
second of each and their ratio (the loop adds a schedule, finiteness checks and a per-step
record; it should cost under 10%).
"""

from __future__ import annotations

import copy
import statistics
import time

import torch

from reversibility.methods import mean_nll
from reversibility.tokenization import collate
from reversibility.training import OptimSettings, train

STEPS, BATCH, LENGTH, REPEATS = 30, 8, 128, 3


def tiny_model():
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=4096,
        hidden_size=128,
        intermediate_size=512,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=LENGTH,
        tie_word_embeddings=True,
    )
    return LlamaForCausalLM(config)


def make_batches():
    generator = torch.Generator().manual_seed(0)
    batches = []
    for _ in range(STEPS):
        lengths = torch.randint(LENGTH // 2, LENGTH + 1, (BATCH,), generator=generator).tolist()
        batches.append(collate([torch.randint(3, 4096, (n,), generator=generator).tolist() for n in lengths], 0))
    return batches


def bare_loop(model, batches):
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    model.train()
    for batch in batches:
        optimizer.zero_grad(set_to_none=True)
        loss = mean_nll(model, batch)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()


def shared_loop(model, batches):
    settings = OptimSettings(learning_rate=1e-4, warmup_steps=5, schedule="cosine", max_grad_norm=1.0)
    train(model, mean_nll, iter(batches), len(batches), settings, log_every=10)


def main() -> None:
    torch.set_num_threads(1)
    base, batches = tiny_model(), make_batches()
    tokens = sum(int(b.attention_mask.sum()) for b in batches)
    timings = {"bare": [], "shared": []}
    for _ in range(REPEATS):
        for name, loop in (("bare", bare_loop), ("shared", shared_loop)):
            model = copy.deepcopy(base)
            start = time.perf_counter()
            loop(model, batches)
            timings[name].append(time.perf_counter() - start)
    rates = {name: tokens / statistics.median(times) for name, times in timings.items()}
    print(f"bare PyTorch loop: {rates['bare']:9.0f} tokens/s")
    print(f"shared loop:       {rates['shared']:9.0f} tokens/s")
    print(f"ratio shared/bare: {rates['shared'] / rates['bare']:9.3f}")


if __name__ == "__main__":
    main()
