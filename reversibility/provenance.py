"""Provenance: what made an artifact (config slice, input hashes, versions, seed, device, time).

Provenance is kept beside an artifact (`<artifact>.meta.json`, or `provenance.json` inside a
checkpoint directory, or HDF5 attributes), never inside the numbers, so two runs of the same
config give byte-identical metrics.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import time
from pathlib import Path
from typing import Any, Mapping

from . import __version__
from .io import read_json, sha256_file, sha256_tree, write_json

_PACKAGES = ("torch", "transformers", "tokenizers", "numpy", "h5py", "snakemake", "peft")
CHECKPOINT_RECORD = "provenance.json"


def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version(), "reversibility": __version__}
    for name in _PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def digest(path: str | os.PathLike) -> str:
    """Content hash of an input; a checkpoint's recorded hash is reused instead of rehashing."""
    path = Path(path)
    if path.is_dir():
        record = path / CHECKPOINT_RECORD
        if record.exists():
            recorded = read_json(record).get("sha256")
            if recorded:
                return recorded
        return sha256_tree(path)
    return sha256_file(path)


class Recorder:
    """Collects a job's provenance; `record()` returns it as a dict."""

    def __init__(
        self, params: Any = None, inputs: Mapping[str, Any] | None = None, seed: int | None = None, device: str = "cpu"
    ):
        self.started = time.time()
        self.params = params
        self.inputs = {name: str(path) for name, path in (inputs or {}).items()}
        self.seed = seed
        self.device = device
        self.extra: dict[str, Any] = {}

    def record(self) -> dict[str, Any]:
        return {
            "params": self.params,
            "inputs": {
                name: {"path": path, "sha256": digest(path)}
                for name, path in self.inputs.items()
                if Path(path).exists()
            },
            "versions": package_versions(),
            "seed": self.seed,
            "device": self.device,
            "wall_seconds": round(time.time() - self.started, 3),
            "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            **self.extra,
        }

    def write_beside(self, artifact: str | os.PathLike) -> Path:
        meta = Path(f"{artifact}.meta.json")
        write_json(meta, self.record())
        return meta
