"""Mixed precision: weights that train in float32, arithmetic in the model spec's dtype.

At the learning rates of the literature (1e-5) an AdamW update of a weight near 0.02 is smaller
than half a bfloat16 step there, so bfloat16 weights round most updates to nothing (and a norm
weight near 1.0 cannot move at all). Hence, in every training stage:

- the weights that train, their gradients and the optimiser's state are float32;
- the forward and backward passes run under autocast in the compute dtype (the spec's `dtype`
  on a GPU, bfloat16 for `auto`), float16 with loss scaling;
- frozen weights (an unlearning method's reference model, the base under a LoRA adapter) and
  the models a capture reads are held in the compute dtype;
- adapters are merged into float32 copies of their base weights.

On a CPU the compute dtype is float32 whatever the spec says (bf16 has no fast CPU kernels);
tests build a `Precision` by hand to run bf16 autocast there.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch

DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}
WEIGHTS = torch.float32  # the dtype of every weight that trains


def compute_dtype(requested: str, device: torch.device | str) -> torch.dtype:
    """float32 on a CPU whatever is asked; on a GPU the spec's dtype (`auto`: bfloat16)."""
    if torch.device(device).type == "cpu":
        return torch.float32
    return torch.bfloat16 if requested == "auto" else DTYPES[requested]


@dataclass(frozen=True)
class Precision:
    compute: torch.dtype = torch.float32
    device_type: str = "cpu"

    @classmethod
    def of(cls, requested: str, device: torch.device | str) -> "Precision":
        """The precision of a model spec's `dtype` on `device`."""
        return cls(compute_dtype(requested, device), torch.device(device).type)

    @property
    def mixed(self) -> bool:
        """Whether the arithmetic is in a lower precision than the weights that train."""
        return self.compute != WEIGHTS

    @property
    def scales_loss(self) -> bool:
        """float16 gradients underflow without loss scaling; bfloat16 has float32's range."""
        return self.compute == torch.float16

    def autocast(self):
        """The context of a forward (and its backward) pass: autocast when mixed."""
        if not self.mixed:
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=self.compute)

    def grad_scaler(self):
        return torch.amp.GradScaler(self.device_type, enabled=self.scales_loss)

    def record(self) -> dict[str, str]:
        """For provenance: what trained in which dtype."""
        return {
            "weights": str(WEIGHTS).removeprefix("torch."),
            "compute": str(self.compute).removeprefix("torch."),
            "device": self.device_type,
        }
