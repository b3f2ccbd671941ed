"""The GPU-memory formula (reversibility/memory.py) against the peak of live tensor bytes PyTorch
measures for two real training steps of small models on this CPU: one ratio per job of
tests/test_memory.py (1.0: the formula is exact), then the table of docs/models.md for the paper's models.

    .venv/bin/python bench/memory.py
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import test_memory as jobs  # noqa: E402  (the measured jobs and their measurement)

from reversibility.memory import published_table  # noqa: E402

for case, (regime, compute, options) in jobs.CASES.items():
    config = jobs.small_config(**regime["config"])
    measured = jobs.measured_once(regime, regime["batch"], compute, **options)
    estimated = jobs.estimated_peak(config, regime["batch"], regime["seq"], compute, **options)
    print(f"{case:48s} formula / measured {estimated / measured:.3f}  ({measured / 2**20:.1f} MiB measured)")
print()
print(published_table())
