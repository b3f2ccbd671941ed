"""The activation cache: HDF5 files written by a capture and read one layer at a time.

Torch-free, so the metrics and diagnostics jobs that only read captures start fast.

HDF5 layout (one file per checkpoint):
  attrs: layers (JSON list of module paths), pooling, max_length, dtype, collapsed,
         provenance (JSON: checkpoint hash, split hashes, config slice, versions), complete
  /splits/<split>/ids              [n] sample ids, in split order
  /splits/<split>/hidden/<k>       [n, hidden] pooled features of layer k of `layers`
  /splits/<split>/tokens/<stat>    [n, max_length - 1]: logprob, correct, mask, mu, sigma
  /splits/<split>/states/<k>       [m, max_length, hidden] token-level states of the first m
                                   samples (only when capture.token_states > 0)
  /splits/<split>/zlib             [n] zlib-compressed bytes of each sample's scored text
  /splits/<split>/lens/<stat>      [n, layers] logit-lens sums per sample and layer of `layers`:
                                   correct (argmax hits), logprob (target log-probabilities),
                                   targets (real targets); forget and holdout only
                                   (`LENS_SPLITS`), when capture.logit_lens is on
  /benchmarks/<name>/ids, answers, generations   greedy solutions to a benchmark's problems
                                   beside their reference answers (attrs: answer_style)
  /fisher/bins                     log-spaced histogram bin edges
  /fisher/n<c>/<k>/histogram       Fisher diagonal histogram of decoder layer k on the first c
                                   forget samples (attrs: path, mass, parameters, below_range,
                                   samples); one group per sample count (cell_data.fisher_counts)

`complete` is written last: a file without it (a killed job) is refused on read. Every dataset
carries the CRC-32 of its values (attribute `crc32`), checked whenever it is read, so a flipped
bit is an error naming the file, never a number.
"""

from __future__ import annotations

import json
import os
import zlib
from pathlib import Path
from typing import Any, Mapping, Sequence

import h5py
import numpy as np

from . import data
from .io import atomic_path, rerun_hint

# The logit lens reads what the cell forgot and what it never saw (the retain probes are not read).
LENS_SPLITS = ("forget", "holdout")


def write_capture(
    path: str | os.PathLike,
    layers: Sequence[str],
    splits: Mapping[str, dict],
    attrs: Mapping[str, Any],
    dtype: str = "float32",
    fisher: Mapping[int, Mapping[str, dict]] | None = None,
    fisher_bins: np.ndarray | None = None,
    benchmarks: Mapping[str, Mapping] | None = None,
) -> None:
    """Write `splits[name] = {"ids", "features", "stats", "zlib"[, "states", "lens"]}`, Fisher summaries
    (`fisher[count][layer path]`) and, per benchmark, `{"ids", "answers", "generations",
    "answer_style"}`."""
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as h5:
            h5.attrs["layers"] = json.dumps(list(layers))
            h5.attrs["dtype"] = dtype
            for key, value in attrs.items():
                h5.attrs[key] = json.dumps(value) if isinstance(value, (dict, list)) else value
            for split, content in splits.items():
                group = h5.create_group(f"splits/{split}")
                group.create_dataset("ids", data=np.array(content["ids"], dtype=h5py.string_dtype()))
                for k, feats in enumerate(content["features"]):
                    group.create_dataset(
                        f"hidden/{k}",
                        data=feats.astype(dtype),
                        chunks=(min(len(feats), 256), feats.shape[1]) if len(feats) else None,
                    )
                for name, value in content["stats"].items():
                    group.create_dataset(f"tokens/{name}", data=value, compression="gzip", compression_opts=1)
                for name, value in (content.get("lens") or {}).items():
                    group.create_dataset(f"lens/{name}", data=np.asarray(value, dtype=np.float32))
                if "zlib" in content:
                    group.create_dataset("zlib", data=np.asarray(content["zlib"], dtype=np.int64))
                for k, states in enumerate(content.get("states") or []):
                    group.create_dataset(
                        f"states/{k}", data=states.astype(dtype), compression="gzip", compression_opts=1
                    )
            if fisher:
                h5.create_dataset("fisher/bins", data=fisher_bins)
                for count, layers_summary in fisher.items():
                    for k, (layer, summary) in enumerate(layers_summary.items()):
                        dataset = h5.create_dataset(f"fisher/n{count}/{k}/histogram", data=summary["histogram"])
                        dataset.attrs["path"] = layer
                        for key in ("mass", "parameters", "below_range", "samples"):
                            dataset.attrs[key] = summary[key]
            for name, answered in (benchmarks or {}).items():
                group = h5.create_group(f"benchmarks/{name}")
                group.attrs["answer_style"] = answered["answer_style"]
                for key in ("ids", "answers", "generations"):
                    group.create_dataset(key, data=np.array(answered[key], dtype=h5py.string_dtype()))
            h5.visititems(_stamp_checksum)
            h5.attrs["complete"] = True


def _checksum(values: np.ndarray) -> int:
    if values.dtype == object:  # variable-length strings: their bytes, not pointers
        return zlib.crc32(b"\0".join(v if isinstance(v, bytes) else str(v).encode() for v in values.ravel()))
    return zlib.crc32(np.ascontiguousarray(values).tobytes())


def _stamp_checksum(_name: str, item) -> None:
    if isinstance(item, h5py.Dataset):
        item.attrs["crc32"] = _checksum(item[()])


class Capture:
    """Read a capture file one layer at a time."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        try:
            self._h5 = h5py.File(self.path, "r")
            complete = bool(self._h5.attrs.get("complete", False))
        except (OSError, RuntimeError, KeyError) as err:
            raise ValueError(f"{self.path}: unreadable HDF5 ({err}); {rerun_hint(self.path)}") from None
        if not complete:
            self._h5.close()
            raise ValueError(f"{self.path}: incomplete capture (no completeness mark); {rerun_hint(self.path)}")

    def __enter__(self) -> "Capture":
        return self

    def __exit__(self, *exc) -> None:
        self._h5.close()

    @property
    def layers(self) -> list[str]:
        return json.loads(self._h5.attrs["layers"])

    @property
    def splits(self) -> list[str]:
        return list(self._h5["splits"].keys())

    def attr(self, name: str, default=None):
        value = self._h5.attrs.get(name, default)
        if isinstance(value, str) and value[:1] in "[{":
            return json.loads(value)
        return value

    def ids(self, split: str) -> list[str]:
        return [s.decode() if isinstance(s, bytes) else s for s in self._read(self._split(split)["ids"])]

    def forget_rows(self, data_dir: str | os.PathLike, n_requests: int) -> np.ndarray:
        """Rows of the captured forget pool that belong to requests 1..N (a cell's forget set)."""
        wanted = {r["id"] for r in data.requested(data.load_split(data_dir, "forget"), n_requests)}
        rows = np.array([i for i, sample in enumerate(self.ids("forget")) if sample in wanted])
        if len(rows) != len(wanted):
            raise ValueError(
                f"the capture holds {len(rows)} of the {len(wanted)} samples of requests "
                f"1..{n_requests}: it was made from other data; rerun its capture rule"
            )
        return rows

    def features(self, split: str, layer: int) -> np.ndarray:
        return self._read(self._split(split)["hidden"][str(layer)]).astype(np.float64)

    def token_stats(self, split: str) -> dict[str, np.ndarray]:
        group = self._split(split)["tokens"]
        return {name: self._read(group[name]) for name in group}

    def token_states(self, split: str, layer: int) -> np.ndarray:
        return self._read(self._split(split)["states"][str(layer)]).astype(np.float64)

    def has_logit_lens(self) -> bool:
        """Whether the forget and holdout splits hold the logit lens (not with capture.logit_lens
        off, nor in a capture made before it existed)."""
        return all(split in self.splits and "lens" in self._split(split) for split in LENS_SPLITS)

    def logit_lens(self, split: str) -> dict[str, np.ndarray]:
        """Per sample and layer, float64 [n, layers]: `correct`, `logprob` (sums over the sample's
        real targets) and `targets` (their number)."""
        group = self._split(split)
        if "lens" not in group:
            raise ValueError(
                f"{self.path}: no logit lens in split {split!r} (captured with capture.logit_lens off, "
                f"or before the lens existed); {rerun_hint(self.path)}"
            )
        return {name: self._read(group["lens"][name]).astype(np.float64) for name in ("correct", "logprob", "targets")}

    def zlib(self, split: str) -> np.ndarray:
        return self._read(self._split(split)["zlib"])

    def _read(self, dataset) -> np.ndarray:
        """A dataset's values, refused when they do not match the checksum written with them."""
        try:
            values = dataset[()]
        except (OSError, RuntimeError) as err:
            raise ValueError(f"{self.path}: {dataset.name} is unreadable ({err}); {rerun_hint(self.path)}") from None
        expected = dataset.attrs.get("crc32")
        if expected is None or _checksum(values) != int(expected):
            raise ValueError(
                f"{self.path}: {dataset.name} does not match its checksum (corrupted); {rerun_hint(self.path)}"
            )
        return values

    def benchmarks(self) -> dict[str, dict]:
        """Per benchmark: ids, reference answers, greedy generations and the answer style (empty
        without benchmarks)."""
        found = {}
        for name, group in self._h5["benchmarks"].items() if "benchmarks" in self._h5 else ():
            found[name] = {
                key: [s.decode() if isinstance(s, bytes) else s for s in self._read(group[key])]
                for key in ("ids", "answers", "generations")
            }
            found[name]["answer_style"] = str(group.attrs["answer_style"])
        return found

    def fisher_counts(self) -> list[int]:
        """The forget-sample counts the Fisher was summarised at (empty without Fisher)."""
        if "fisher" not in self._h5:
            return []
        return sorted(int(key[1:]) for key in self._h5["fisher"] if key != "bins")

    def fisher(self, samples: int) -> tuple[np.ndarray | None, dict[str, dict]]:
        """Bin edges and, per decoder layer path, the histogram and summary of the Fisher on the
        first `samples` forget samples (empty without Fisher)."""
        if "fisher" not in self._h5:
            return None, {}
        if samples not in self.fisher_counts():
            raise ValueError(
                f"{self.path}: no Fisher on {samples} samples (has {self.fisher_counts()}); {rerun_hint(self.path)}"
            )
        group = self._h5["fisher"][f"n{samples}"]
        layers = {}
        for key in sorted(group, key=int):
            dataset = group[key]["histogram"]
            layers[dataset.attrs["path"]] = {
                "histogram": self._read(dataset),
                **{k: dataset.attrs[k].item() for k in ("mass", "parameters", "below_range", "samples")},
            }
        return self._read(self._h5["fisher"]["bins"]), layers

    def _split(self, split: str):
        try:
            return self._h5["splits"][split]
        except KeyError:
            raise ValueError(f"{self.path}: no split {split!r} (has {', '.join(self.splits)})") from None
