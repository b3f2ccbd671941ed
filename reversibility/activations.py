"""The activation cache: HDF5 files written by a capture and read one layer at a time.

Torch-free, so the metrics and diagnostics jobs that only read captures start fast.

HDF5 layout (one file per checkpoint):
  attrs: layers (JSON list of module paths), pooling, max_length, collapsed, provenance, complete
  /<split>/ids                [n] sample ids, in split order
  /<split>/hidden/<k>         [n, hidden] float32 (or float16), layer k of `layers`
  /<split>/tokens/<stat>      [n, max_length - 1]: logprob, correct, mask, mu, sigma
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import h5py
import numpy as np

from .io import atomic_path


def write_capture(path: str | os.PathLike, layers: Sequence[str], splits: Mapping[str, dict],
                  attrs: Mapping[str, Any], dtype: str = "float32") -> None:
    """Write `splits[name] = {"ids", "features", "stats"}` atomically; `complete` is set last."""
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as h5:
            h5.attrs["layers"] = json.dumps(list(layers))
            for key, value in attrs.items():
                h5.attrs[key] = json.dumps(value) if isinstance(value, (dict, list)) else value
            for split, content in splits.items():
                group = h5.create_group(split)
                group.create_dataset("ids", data=np.array(content["ids"], dtype=h5py.string_dtype()))
                hidden = group.create_group("hidden")
                for k, feats in enumerate(content["features"]):
                    hidden.create_dataset(str(k), data=feats.astype(dtype),
                                          chunks=(min(len(feats), 256), feats.shape[1]) if len(feats) else None)
                tokens = group.create_group("tokens")
                for name, value in content["stats"].items():
                    tokens.create_dataset(name, data=value, compression="gzip", compression_opts=1)
            h5.attrs["complete"] = True


class Capture:
    """Read a capture file one layer at a time."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        try:
            self._h5 = h5py.File(self.path, "r")
        except OSError as err:
            raise ValueError(f"{self.path}: unreadable HDF5 ({err}); rerun its capture rule") from None
        if not self._h5.attrs.get("complete", False):
            self._h5.close()
            raise ValueError(f"{self.path}: incomplete capture (no completeness mark); rerun its capture rule")

    def __enter__(self) -> "Capture":
        return self

    def __exit__(self, *exc) -> None:
        self._h5.close()

    @property
    def layers(self) -> list[str]:
        return json.loads(self._h5.attrs["layers"])

    @property
    def splits(self) -> list[str]:
        return list(self._h5.keys())

    def attr(self, name: str, default=None):
        value = self._h5.attrs.get(name, default)
        if isinstance(value, str) and value[:1] in "[{":
            return json.loads(value)
        return value

    def ids(self, split: str) -> list[str]:
        return [s.decode() if isinstance(s, bytes) else s for s in self._h5[split]["ids"][()]]

    def features(self, split: str, layer: int) -> np.ndarray:
        return self._h5[split]["hidden"][str(layer)][()].astype(np.float64)

    def token_stats(self, split: str) -> dict[str, np.ndarray]:
        group = self._h5[split]["tokens"]
        return {name: group[name][()] for name in group}
