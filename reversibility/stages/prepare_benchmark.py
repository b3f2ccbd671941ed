"""Stage `prepare_benchmark`: an evaluation benchmark's problems and reference answers."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Mapping

from .. import benchmarks
from ..provenance import Recorder

log = logging.getLogger(__name__)


def prepare_benchmark(name: str, spec: Mapping, out_dir: str | os.PathLike) -> None:
    recorder = Recorder(params={"benchmark": name, "spec": dict(spec)})
    manifest = benchmarks.prepare(name, spec, out_dir)
    log.info("benchmark %s: %d problems", name, manifest["problems"])
    recorder.write_beside(Path(out_dir) / "manifest.json")
