"""A training stage sharded over the G processes of one node, under PyTorch's FSDP2.

A model spec's `sharding` runs its training stages (base training, unlearning, relearning) as G
processes launched by `torch.distributed.run` from the job: one per GPU (NCCL), or per CPU share
(gloo, which is how the tests run it). Every process runs the same stage function:

- the weights that train, their gradients and AdamW's state are sharded over the processes
  (`fully_shard` on every decoder layer and on the whole model), and so is a frozen reference;
- the sequences of every micro-batch are dealt out to the processes (data parallel); the losses
  divide their sums by the step's totals (tokenization.Batch), so the shares' gradients, summed
  over the processes, are exactly those of the whole micro-batch; a batch with fewer sequences
  than processes goes whole to every process, its totals counted G times;
- evaluations run the same batches on every process (each forward all-gathers the weights) and
  agree; checkpoints are gathered into one ordinary safetensors file by the first process, which
  also runs the captures on one device, with the model whole.

Precision stays that of a single process (precision.py): float32 weights, autocast in the spec's
dtype. Numbers agree with a single-process run up to the order of floating-point sums.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path
from typing import Any, Callable

import torch

log = logging.getLogger(__name__)

# Collective calls wait at most this long for the slowest process (the first process alone
# captures a 7B model at the start and end of a relearning job).
TIMEOUT = timedelta(hours=6)


@dataclass(frozen=True)
class Group:
    """The processes a stage runs on: this one alone, or one of `size` sharding a model."""

    size: int = 1
    rank: int = 0

    @property
    def sharded(self) -> bool:
        return self.size > 1

    @property
    def main(self) -> bool:
        """The process that writes files and runs captures."""
        return self.rank == 0

    def share(self, micro_batch: Any) -> Any:
        """This process's sequences of a micro-batch (a Batch or a tuple of them by role)."""
        from .tokenization import Batch

        if not self.sharded:
            return micro_batch
        if isinstance(micro_batch, Batch):
            return self._share_batch(micro_batch)
        if isinstance(micro_batch, tuple):
            return tuple(None if part is None else self._share_batch(part) for part in micro_batch)
        raise TypeError(f"cannot deal out a micro-batch of type {type(micro_batch).__name__} to processes")

    def _share_batch(self, batch):
        targets = batch.n_targets() if batch.step_targets is None else batch.step_targets
        sequences = len(batch) if batch.step_sequences is None else batch.step_sequences
        if len(batch) < self.size:
            # Whole on every process: counted G times, each share is 1/G of the batch's loss.
            return replace(batch, step_targets=targets * self.size, step_sequences=sequences * self.size)
        rows = slice(self.rank, None, self.size)
        width = int(batch.attention_mask[rows].sum(dim=1).max())
        return replace(
            batch,
            input_ids=batch.input_ids[rows, :width],
            attention_mask=batch.attention_mask[rows, :width],
            labels=batch.labels[rows, :width],
            step_targets=targets,
            step_sequences=sequences,
        )

    def total(self, value: float) -> float:
        """The sum of `value` over the processes."""
        if not self.sharded:
            return value
        import torch.distributed as dist

        summed = torch.tensor([float(value)], dtype=torch.float64)
        dist.all_reduce(summed)
        return summed.item()

    def all(self, flag: bool) -> bool:
        """Whether `flag` holds on every process (so that all take the same branch)."""
        if not self.sharded:
            return bool(flag)
        import torch.distributed as dist

        held = torch.tensor([1 if flag else 0], dtype=torch.int32)
        dist.all_reduce(held, op=dist.ReduceOp.MIN)
        return bool(held.item())

    def from_main(self, value: Any) -> Any:
        """The first process's `value`, on every process."""
        if not self.sharded:
            return value
        import torch.distributed as dist

        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def barrier(self) -> None:
        if self.sharded:
            import torch.distributed as dist

            dist.barrier()


def current() -> Group:
    """The group this process belongs to (a single process outside `torch.distributed.run`)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return Group(dist.get_world_size(), dist.get_rank())
    return Group()


def device() -> torch.device:
    """The device of this process: its own GPU under sharding (LOCAL_RANK), else cuda or cpu."""
    if not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))


def decoder_layers(model) -> list[torch.nn.Module]:
    """The repeated blocks to shard one by one: the modules whose class transformers keeps whole
    when it splits a model over devices (`_no_split_modules`, e.g. LlamaDecoderLayer)."""
    names = set(getattr(model, "_no_split_modules", None) or ())
    layers = [module for module in model.modules() if type(module).__name__ in names]
    if not layers:
        raise ValueError(f"{type(model).__name__}: no decoder layers to shard (its _no_split_modules: {sorted(names)})")
    return layers


def shard(model, group: Group):
    """`model` sharded in place over the group's processes (each decoder layer, then the rest),
    on this process's device; unchanged for a single process."""
    if not group.sharded:
        return model
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    mesh = init_device_mesh(device().type, (group.size,))
    for layer in decoder_layers(model):
        fully_shard(layer, mesh=mesh)
    # The whole model too reshards after every forward pass (FSDP keeps the root's weights
    # gathered for the backward pass by default): an evaluation's forward pass, which has no
    # backward pass, must not leave whole weights where the optimiser expects its shards.
    fully_shard(model, mesh=mesh, reshard_after_forward=True)
    return model


def full_state_dict(model, group: Group) -> dict[str, torch.Tensor] | None:
    """The whole float32 weights on the host of the first process (None elsewhere); every process
    must call it."""
    if not group.sharded:
        return None
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    state = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    if not group.main:
        return None
    # Gathered, tied weights (embeddings and output layer) come back as copies: keep the first
    # name of each, as an unsharded model saves them.
    names: dict[int, str] = {}
    for name, parameter in model.named_parameters(remove_duplicate=False):
        if names.setdefault(id(parameter), name) != name:
            state.pop(name, None)
    return state


def local(tensor: torch.Tensor) -> torch.Tensor:
    """This process's shard of a sharded tensor (DTensor); a plain tensor as it is."""
    return tensor.to_local() if hasattr(tensor, "to_local") else tensor


def whole(tensor: torch.Tensor) -> torch.Tensor:
    """A sharded or partial result (DTensor) made whole on every process."""
    return tensor.full_tensor() if hasattr(tensor, "full_tensor") else tensor


# ----------------------------------------------------------------------------- launching


def run(stage: Callable[..., None], processes: int, **arguments) -> None:
    """Run `stage(**arguments)` here, or, with `processes` > 1, as that many processes under
    `torch.distributed.run`, the job waiting for them. The arguments travel as JSON."""
    if processes <= 1:
        stage(**arguments)
        return
    threads = arguments.get("threads", processes)
    arguments = {**arguments, "threads": max(1, threads // processes)}
    package_root = str(Path(__file__).resolve().parent.parent)
    environment = {
        **os.environ,
        "OMP_NUM_THREADS": str(arguments["threads"]),
        "PYTHONPATH": os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")])),
    }
    with tempfile.TemporaryDirectory(prefix="sharded-") as folder:
        call = Path(folder) / "stage.json"
        call.write_text(
            json.dumps({"stage": f"{stage.__module__}:{stage.__qualname__}", "arguments": arguments}, default=str)
        )
        command = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            f"--nproc-per-node={processes}",
            "-m",
            __name__,
            str(call),
        ]
        log.info("%s sharded over %d processes: %s", stage.__name__, processes, " ".join(command))
        output = _stream(sys.stdout)
        sys.stdout.flush()
        finished = subprocess.run(command, env=environment, stdout=output, stderr=subprocess.STDOUT if output else None)
    if finished.returncode:
        raise RuntimeError(
            f"{stage.__name__} sharded over {processes} processes failed (exit status "
            f"{finished.returncode}); the processes' tracebacks are above in this log"
        )


def _stream(handle):
    """A stream a child process can write to (the job's log), or None to inherit ours."""
    try:
        handle.fileno()
        return handle
    except (AttributeError, OSError, ValueError):
        return None


def _main(call_path: str) -> None:
    """One process of a sharded stage (the entry point `run` launches)."""
    import faulthandler

    import torch.distributed as dist

    faulthandler.enable()  # a crash in a collective shows where each process was
    call = json.loads(Path(call_path).read_text())
    module, name = call["stage"].split(":")
    stage = getattr(importlib.import_module(module), name)
    if torch.cuda.is_available():
        torch.cuda.set_device(device())
    dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo", timeout=TIMEOUT)
    group = current()
    logging.basicConfig(
        level=logging.INFO if group.main else logging.WARNING,
        format=f"%(asctime)s %(levelname)s [process {group.rank}/{group.size}] %(name)s: %(message)s",
    )
    try:
        stage(**call["arguments"])
        # Every process ends the stage before any tears the group down: one that exits while its
        # peer still writes or captures can abort in gloo's teardown (SIGABRT at exit).
        dist.barrier()
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    _main(sys.argv[1])
