"""Capture, CKA and Fisher against the slow ways of doing the same thing, in one process.

Prints, each as a ratio measured on the same inputs:
1. capture of every layer (hooks + masked mean pooling) / a bare forward pass;
   also with the token statistics the metrics need; and the capture with the logit lens (every
   layer read through the final norm and the output head) / the same capture without it, on one
   split and for the capture stage's whole work on the default's samples (forget pool 64, retain
   probes 32, holdout 64, the lens on forget and holdout; the Fisher on 16 forget samples);
2. one forward per layer (the public toolbox's way) / our one forward for all layers;
3. naive n x n Gram CKA with explicit centring matrices / our CKA, for every layer,
   n = 4096 samples of width d = 576;
4. a per-sample backward loop / the vectorised per-sample-gradient Fisher, on short and on
   full-length sequences, with one thread and with every core (on a CPU both do nearly the same
   arithmetic, so vectorising gains most where the loop's per-call overhead dominates); on a GPU
   also for a model of SmolLM2-135M's shape.

    python bench/representations.py                  # on the CPU
    python bench/representations.py --device cuda    # models and batches on the GPU
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch

from reversibility.activations import LENS_SPLITS
from reversibility.fisher import decoder_layer_paths, diagonal_fisher, fisher_prefixes, loop_fisher
from reversibility.forward_pass import capture_split, layer_modules
from reversibility.representations import linear_cka
from reversibility.tokenization import batches

SHAPES = {
    "tiny": dict(
        vocab_size=4096,
        hidden_size=128,
        intermediate_size=512,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=4,
    ),
    "SmolLM2-135M": dict(
        vocab_size=49152,
        hidden_size=576,
        intermediate_size=1536,
        num_hidden_layers=30,
        num_attention_heads=9,
        num_key_value_heads=3,
    ),
}


def random_model(shape, device):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(**SHAPES[shape], max_position_embeddings=128, tie_word_embeddings=True)
    return LlamaForCausalLM(config).to(device).eval()


def sequences(n, vocab=4096, seed=0):
    generator = torch.Generator().manual_seed(seed)
    lengths = torch.randint(64, 129, (n,), generator=generator).tolist()
    return [torch.randint(3, vocab, (k,), generator=generator).tolist() for k in lengths]


def synchronize():
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def best_of(fn, repeats=3):
    """The fastest of `repeats` runs, each timed until the device is done."""
    times = []
    for _ in range(repeats):
        synchronize()
        start = time.perf_counter()
        fn()
        synchronize()
        times.append(time.perf_counter() - start)
    return min(times)


@torch.no_grad()
def bare_forward(model, data):
    device = next(model.parameters()).device
    for batch in batches(data, 32, 0):
        batch = batch.to(device)
        model(input_ids=batch.input_ids, attention_mask=batch.attention_mask)


@torch.no_grad()
def forward_per_layer(model, data):
    """The toolbox's way: one forward with all hidden states per layer, keeping one layer."""
    device = next(model.parameters()).device
    for layer in range(len(layer_modules(model))):
        for batch in batches(data, 32, 0):
            batch = batch.to(device)
            states = model(
                input_ids=batch.input_ids, attention_mask=batch.attention_mask, output_hidden_states=True
            ).hidden_states
            states[min(layer, len(states) - 1)].mean(1)


def capture_work(model, splits, logit_lens):
    """What a capture job computes for one checkpoint (stages/capture.py): every split with the
    token statistics, the lens where the job reads it, and the Fisher at two sample counts."""
    device = next(model.parameters()).device
    for name, data in splits.items():
        capture_split(model, data, 0, 32, "mean", 128, device, logit_lens=logit_lens and name in LENS_SPLITS)
    fisher_prefixes(model, splits["forget"][:16], 0, decoder_layer_paths(model), [8, 16], chunk_size=8)


def naive_cka(x, y):
    n = len(x)
    h = np.eye(n) - np.ones((n, n)) / n
    k, l = h @ (x @ x.T) @ h, h @ (y @ y.T) @ h
    return np.trace(k @ l) / np.sqrt(np.trace(k @ k) * np.trace(l @ l))


def capture_ratios(model, label):
    data = sequences(192, vocab=model.config.vocab_size)
    device = next(model.parameters()).device
    bare_forward(model, data)  # warm-up: kernels, allocator, libraries
    bare = best_of(lambda: bare_forward(model, data), repeats=5)
    layers_only = best_of(lambda: capture_split(model, data, 0, 32, "mean", 128, device, with_stats=False), 5)
    with_stats = best_of(lambda: capture_split(model, data, 0, 32, "mean", 128, device), repeats=5)
    with_lens = best_of(lambda: capture_split(model, data, 0, 32, "mean", 128, device, logit_lens=True), 5)
    splits = {
        name: sequences(n, vocab=model.config.vocab_size, seed=k)
        for k, (name, n) in enumerate((("forget", 64), ("retain", 32), ("holdout", 64)))
    }
    job = best_of(lambda: capture_work(model, splits, False), repeats=3)
    job_with_lens = best_of(lambda: capture_work(model, splits, True), repeats=3)
    per_layer = best_of(lambda: forward_per_layer(model, data), repeats=1)
    n_layers = len(layer_modules(model))
    print(f"1. {label}: capture of all {n_layers} layers / bare forward: {layers_only / bare:6.3f}  (limit 1.15)")
    print(f"   with the token statistics of the metrics / bare forward: {with_stats / bare:6.3f}")
    print(f"   with the logit lens / the same capture without it:      {with_lens / with_stats:6.3f}")
    print(f"   the capture job's work with the lens / without it:      {job_with_lens / job:6.3f}  (target 1.3)")
    print(
        f"2. {label}: one forward per layer / one forward for all:  {per_layer / layers_only:6.2f}  "
        f"(at least {n_layers / 2:.1f})"
    )


def fisher_ratios(model, label, threads):
    paths = decoder_layer_paths(model)
    vocab = model.config.vocab_size
    generator = torch.Generator().manual_seed(1)
    probes = {
        (n, length): [torch.randint(3, vocab, (length,), generator=generator).tolist() for _ in range(n)]
        for length, n in ((16, 128), (128, 32))
    }
    for (n, length), probe in probes.items():
        loop = best_of(lambda: loop_fisher(model, probe, 0, paths), repeats=2)
        vectorised = min(
            best_of(lambda: diagonal_fisher(model, probe, 0, paths, chunk_size=chunk), repeats=2)
            for chunk in (16, 64, 128)
        )
        print(
            f"4. per-sample loop Fisher / vectorised, {label}, {n} x {length} tokens, {threads}: "
            f"{loop / vectorised:6.2f}  (at least 5)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    device = torch.device(parser.parse_args().device)
    torch.set_num_threads(1)
    print(f"device: {torch.cuda.get_device_name(device) if device.type == 'cuda' else 'cpu'}")
    # On a GPU also a model of SmolLM2-135M's shape (too slow for the per-sample loop on a CPU).
    models = {"tiny": random_model("tiny", device)}
    if device.type == "cuda":
        models["SmolLM2-135M shape"] = random_model("SmolLM2-135M", device)
    for label, model in models.items():
        capture_ratios(model, label)

    rng = np.random.default_rng(0)
    cka_layers = [(rng.normal(size=(4096, 576)), rng.normal(size=(4096, 576))) for _ in range(2)]
    ours = best_of(lambda: [linear_cka(x, y) for x, y in cka_layers], repeats=2)
    naive = best_of(lambda: [naive_cka(x, y) for x, y in cka_layers], repeats=1)
    print(f"3. naive Gram CKA / ours, n=4096 d=576, {len(cka_layers)} layers:    {naive / ours:6.1f}  (at least 10)")

    if device.type == "cuda":
        for label, model in models.items():
            fisher_ratios(model, label, "GPU")
        return
    # One thread, as a workflow job with the default `threads: 1`; then every core of the machine.
    for threads in sorted({1, os.cpu_count() or 1}):
        torch.set_num_threads(threads)
        fisher_ratios(models["tiny"], "tiny", f"{threads} thread(s)")


if __name__ == "__main__":
    main()
