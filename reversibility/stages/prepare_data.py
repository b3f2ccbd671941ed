"""Stage `prepare_data`: documents -> leak-free splits and a manifest (data.py)."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Mapping

from .. import data
from ..provenance import Recorder

log = logging.getLogger(__name__)


def prepare_data(dataset: str, spec: Mapping, seed: int, source_version: Mapping, out_dir: str | os.PathLike) -> None:
    recorder = Recorder(
        params={"dataset": dataset, "spec": dict(spec), "seed": seed, "source_version": dict(source_version)}, seed=seed
    )
    manifest = data.prepare(dataset, spec, seed, out_dir)
    log.info("dataset %s: %s", dataset, {k: v["samples"] for k, v in manifest["splits"].items()})
    recorder.write_beside(Path(out_dir) / "manifest.json")
