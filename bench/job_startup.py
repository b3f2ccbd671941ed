"""Why a cell's checkpoints are captured by one job: the start-up of a torch job versus its work.

Times, in fresh processes: (a) importing what a capture job imports, (b) a whole capture of one
micro checkpoint, (c) one process capturing two checkpoints. Prints the start-up share of a job
and the saving of capturing two checkpoints in one job rather than two.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

SETUP = """
import sys
from pathlib import Path
from reversibility import data
from reversibility.models import build_scratch_model, save_checkpoint
from reversibility.tokenization import train_bpe
root = Path(sys.argv[1])
spec = dict(source="stdlib", path=None, exclude_dirs=["test", "tests", "idle_test", "site-packages",
            "__pycache__", "ensurepip", "encodings", "lib2to3", "pydoc_data"], forget_requests=8,
            request_size=8, retain=64, holdout=64, max_samples_per_document=4, min_chars=160,
            max_chars=400, background_chars=300000)
data.prepare("github", spec, 0, root / "data")
tok = train_bpe((r["text"] for r in data.load_split(root / "data", "background")), 4096)
model = build_scratch_model(dict(architecture="llama", hidden_size=128, intermediate_size=512,
                                 num_layers=4, num_heads=4, max_length=128), tok, 0)
for name in ("a", "b"):
    save_checkpoint(model, tok, root / name, {})
"""

IMPORTS = "from reversibility.stages import capture; import transformers; transformers.AutoModelForCausalLM"

CAPTURE = """
import sys
from pathlib import Path
from reversibility.stages.capture import capture
root = Path(sys.argv[1])
names = sys.argv[2:]
capture({n: (root / n, root / f"{n}.h5") for n in names}, root / "data",
        capture_config=dict(pooling="mean", batch_size=32, retain_samples=64, dtype="float32"),
        max_length=128, threads=1)
"""


def timed(code: str, *args: str) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code, *args], check=True, cwd=REPO, capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        timed(SETUP, tmp)
        startup = min(timed(IMPORTS) for _ in range(2))
        one = min(timed(CAPTURE, tmp, "a") for _ in range(2))
        both = min(timed(CAPTURE, tmp, "a", "b") for _ in range(2))
    print(f"start-up (imports) of a capture job:     {startup:6.2f} s")
    print(f"capture job, one checkpoint:             {one:6.2f} s")
    print(f"capture job, two checkpoints:            {both:6.2f} s")
    print(f"start-up share of a one-checkpoint job:  {startup / one:6.2f}")
    print(f"two checkpoints: one job / two jobs:     {both / (2 * one):6.2f}")


if __name__ == "__main__":
    main()
