"""One global seed; every job derives its own from it and the job's key."""

from __future__ import annotations

import hashlib
import random


def derive_seed(seed: int, *key: object) -> int:
    """A 31-bit seed that depends on the global seed and on the key (e.g. a grid cell)."""
    text = "/".join([str(seed), *map(str, key)])
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "little") & 0x7FFFFFFF


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch.

    torch's CPU kernels are deterministic for a fixed thread count; on CUDA, deterministic
    algorithms are requested too (the switch costs seconds of imports, so only there).
    """
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.use_deterministic_algorithms(True, warn_only=True)
