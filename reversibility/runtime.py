"""Job runtime: logging to the rule's log file, torch threads, seeds."""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path
from typing import Iterator


@contextlib.contextmanager
def job_log(path: str | os.PathLike | None) -> Iterator[logging.Logger]:
    """Send logging, stdout and stderr (progress bars, library warnings) to the rule's log file."""
    logger = logging.getLogger("reversibility")
    if path is None:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
        yield logger
        return
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", buffering=1) as handle, contextlib.redirect_stdout(handle), contextlib.redirect_stderr(handle):
        handler = logging.StreamHandler(handle)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root = logging.getLogger()
        root.addHandler(handler)
        root.setLevel(logging.INFO)
        try:
            yield logger
        except BaseException:
            logger.exception("job failed")
            raise
        finally:
            root.removeHandler(handler)


def configure_torch(threads: int, seed: int) -> None:
    import torch

    from .seeds import seed_everything

    torch.set_num_threads(max(1, int(threads)))
    seed_everything(seed)


def training_job(stage, snakemake, **arguments) -> None:
    """Run a training stage as the Snakemake job `snakemake`: in its log, with its threads and
    config slice, and with the model spec's execution settings (gradient checkpointing, memory
    only; sharding), read from the config so that switching them reruns nothing."""
    from .config import sharding_processes
    from .sharding import run

    spec = snakemake.config["models"][snakemake.wildcards.model]
    with job_log(snakemake.log[0]):
        run(
            stage,
            sharding_processes(spec),
            threads=snakemake.threads,
            checkpointing=spec["gradient_checkpointing"],
            **arguments,
            **snakemake.params.config,
        )
