"""Fake quantization: round-to-nearest, symmetric, per output channel (Zhang et al. 2024 report
that quantizing an unlearned model can bring forgotten knowledge back).

Every linear layer's weight W is replaced by s * round(W / s), with s = max|W_row| / (2^(b-1) - 1)
per output row; embeddings, norms and the (often tied) output head stay in full precision, as
in weight-only quantization schemes. The arithmetic stays in float32 (fake quantization), so
the numbers are those a real b-bit weight-only backend would produce, up to its kernels.
"""

from __future__ import annotations

import torch


def quantized_linears(model) -> list[torch.nn.Linear]:
    """The linear layers weight-only quantization rounds: all but the output head."""
    output_head = model.get_output_embeddings()
    return [m for m in model.modules() if isinstance(m, torch.nn.Linear) and m is not output_head]


@torch.no_grad()
def fake_quantize_(model, bits: int) -> int:
    """Quantize the model's linear weights in place; returns how many tensors were quantized."""
    if bits < 2:
        raise ValueError(f"cannot quantize to {bits} bits (at least 2)")
    levels = 2 ** (bits - 1) - 1
    linears = quantized_linears(model)
    for module in linears:
        weight = module.weight
        scale = weight.abs().amax(dim=1, keepdim=True).clamp(min=1e-12) / levels
        weight.copy_((weight / scale).round().clamp(-levels, levels) * scale)
    return len(linears)
