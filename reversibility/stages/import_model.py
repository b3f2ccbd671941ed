"""Stage `import_model`: a `gguf` model spec's file as a safetensors checkpoint."""

from __future__ import annotations

import os
from typing import Mapping

from ..models import import_gguf
from ..provenance import Recorder


def import_model(model_name: str, spec: Mapping, out_dir: str | os.PathLike) -> None:
    """Convert a `gguf` model spec's file into a safetensors checkpoint, once."""
    recorder = Recorder(params={"spec": dict(spec)})
    import_gguf(spec["gguf_package"], spec["gguf_file"], out_dir, recorder.record())
