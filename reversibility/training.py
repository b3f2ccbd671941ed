"""The one training loop shared by base training, unlearning and relearning.

AdamW, linear warmup then a constant, linear or cosine schedule, gradient clipping, gradient
accumulation, a per-step record and a progress bar. Forward and backward passes run under the
job's `Precision` (autocast; loss scaling for float16): the weights that train stay float32. A
non-finite loss or gradient stops the run cleanly and marks it collapsed (GA at a high learning
rate does this); the weights stay those of the last finite step. Under float16 loss scaling, a
step whose gradients overflow is skipped and the scale lowered, as loss scaling does.

Accumulating k micro-batches is exactly one step over a batch holding all their sequences: each
micro-batch is told the step's totals of real targets and sequences for its role (forget or
retain; tokenization.Batch), and the losses divide their sums by those totals (methods.py).
Under sharding (sharding.py) each process takes its share of every micro-batch's sequences and
the processes' gradients add up to the step's; the steps they record are the same.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Collection, Iterator, Mapping

import torch
from tqdm import tqdm

from . import sharding
from .precision import Precision
from .tokenization import Batch, share_step_totals

log = logging.getLogger(__name__)

LossFn = Callable[[torch.nn.Module, Any], torch.Tensor]


@dataclass(frozen=True)
class OptimSettings:
    learning_rate: float
    weight_decay: float = 0.0
    beta1: float = 0.9
    beta2: float = 0.999
    warmup_steps: int = 0
    schedule: str = "constant"  # constant | linear | cosine (decay to min_lr_ratio)
    min_lr_ratio: float = 0.0
    max_grad_norm: float | None = 1.0
    grad_accumulation: int = 1

    @classmethod
    def from_config(cls, config: Mapping[str, Any], **overrides) -> "OptimSettings":
        values = {k: v for k, v in {**config, **overrides}.items() if k in cls.__dataclass_fields__}
        return cls(**values)


@dataclass
class TrainRecord:
    steps: list[dict] = field(default_factory=list)
    evaluations: list[dict] = field(default_factory=list)
    collapsed: bool = False
    collapse_step: int | None = None
    collapse_reason: str | None = None

    def as_dict(self) -> dict:
        return asdict(self)


def lr_factor(step: int, total: int, settings: OptimSettings) -> float:
    """Multiplier of the peak learning rate at optimizer step `step` (0-based)."""
    if step < settings.warmup_steps:
        return (step + 1) / settings.warmup_steps
    if settings.schedule == "constant":
        return 1.0
    progress = (step - settings.warmup_steps) / max(1, total - settings.warmup_steps)
    floor = settings.min_lr_ratio
    if settings.schedule == "linear":
        return floor + (1 - floor) * (1 - progress)
    if settings.schedule == "cosine":
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))
    raise ValueError(f"unknown schedule {settings.schedule!r}")


def make_optimizer(model: torch.nn.Module, settings: OptimSettings) -> torch.optim.Optimizer:
    """AdamW; on a GPU fused into one kernel, which needs no step buffer as large as the weights
    (foreach's sqrt(exp_avg_sq): 28 GiB for a 7B model; reversibility/memory.py)."""
    params = [p for p in model.parameters() if p.requires_grad]
    fused = bool(params) and all(p.device.type == "cuda" for p in params)
    return torch.optim.AdamW(
        params,
        lr=settings.learning_rate,
        weight_decay=settings.weight_decay,
        betas=(settings.beta1, settings.beta2),
        fused=fused or None,
    )


def train(
    model: torch.nn.Module,
    loss_fn: LossFn,
    micro_batches: Iterator[Any],
    total_steps: int,
    settings: OptimSettings,
    *,
    desc: str = "train",
    log_every: int = 10,
    record: TrainRecord | None = None,
    step_offset: int = 0,
    evaluate: Callable[[], dict] | None = None,
    evaluate_every: int = 0,
    evaluate_at: Collection[int] = (),
    precision: Precision = Precision(),
) -> TrainRecord:
    """Run `total_steps` optimizer steps; each consumes `grad_accumulation` micro-batches.

    The step's loss is the sum of `loss_fn` over its micro-batches, not their mean: a loss divides
    its sums by the step's totals that each micro-batch carries (Batch.step_targets,
    step_sequences), so its micro-batches' shares add up to the loss of one larger batch.

    With `evaluate`, its result is recorded (in eval mode, under the same autocast) every
    `evaluate_every` steps and after each step (counted from 1) in `evaluate_at`.
    """
    record = record if record is not None else TrainRecord()
    optimizer = make_optimizer(model, settings)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, total_steps, settings))
    params = [p for group in optimizer.param_groups for p in group["params"]]
    lowered = sorted({str(p.dtype) for p in params if p.dtype != torch.float32})
    if lowered:
        raise ValueError(
            f"trainable weights in {', '.join(lowered)}: weights that train must be float32 "
            "(low-precision weights round small updates away); see reversibility/precision.py"
        )
    model.train()
    try:
        return _run(
            model,
            loss_fn,
            micro_batches,
            total_steps,
            settings,
            optimizer,
            scheduler,
            params,
            desc,
            log_every,
            record,
            step_offset,
            evaluate,
            evaluate_every,
            frozenset(evaluate_at),
            precision,
        )
    finally:
        optimizer.zero_grad(set_to_none=True)
        model.eval()


def _run(
    model,
    loss_fn,
    micro_batches,
    total_steps,
    settings,
    optimizer,
    scheduler,
    params,
    desc,
    log_every,
    record,
    step_offset,
    evaluate,
    evaluate_every,
    evaluate_at,
    precision,
) -> TrainRecord:
    progress = tqdm(range(total_steps), desc=desc, mininterval=5, disable=total_steps < 50)
    device = params[0].device if params else torch.device("cpu")
    scaler = precision.grad_scaler()
    group = sharding.current()
    for step in progress:
        optimizer.zero_grad(set_to_none=True)
        total = 0.0
        for micro_batch in step_micro_batches(micro_batches, settings.grad_accumulation, device, group):
            with precision.autocast():
                loss = loss_fn(model, micro_batch)
            if not group.all(torch.isfinite(loss).item()):
                return _collapse(record, step_offset + step, f"non-finite loss {group.total(loss.item())}")
            # Sharded, the processes' gradients are averaged; their losses are shares of the step's.
            scaler.scale(loss * group.size).backward()
            total += loss.item()
        total = group.total(total)
        scaler.unscale_(optimizer)
        max_norm = settings.max_grad_norm if settings.max_grad_norm else float("inf")
        grad_norm = sharding.whole(torch.nn.utils.clip_grad_norm_(params, max_norm)).item()
        if not math.isfinite(grad_norm) and not scaler.is_enabled():
            return _collapse(record, step_offset + step, f"non-finite gradient norm {grad_norm}")
        lr = scheduler.get_last_lr()[0]
        scaler.step(optimizer)  # with loss scaling: skipped when the gradients overflowed
        scaler.update()
        scheduler.step()
        entry = {"step": step_offset + step + 1, "loss": total, "lr": lr, "grad_norm": grad_norm}
        if not math.isfinite(grad_norm):
            entry["skipped"] = True
            log.warning("%s step %d: gradients overflowed float16; step skipped, loss scale lowered", desc, step + 1)
        record.steps.append(entry)
        if (step + 1) % log_every == 0 or step + 1 == total_steps:
            log.info(
                "%s step %d/%d loss %.4f lr %.2e grad_norm %.3f", desc, step + 1, total_steps, total, lr, grad_norm
            )
        due = (evaluate_every and (step + 1) % evaluate_every == 0) or step + 1 in evaluate_at
        if evaluate is not None and due:
            model.eval()
            with precision.autocast():
                record.evaluations.append({"step": step_offset + step + 1, **evaluate()})
            model.train()
    if not group.all(all(torch.isfinite(sharding.local(p)).all() for p in params)):
        return _collapse(record, step_offset + total_steps, "non-finite weights")
    return record


def step_micro_batches(
    micro_batches: Iterator[Any],
    count: int,
    device: torch.device | str = "cpu",
    group: sharding.Group = sharding.Group(),
) -> list[Any]:
    """The `count` micro-batches of one optimiser step on the weights' `device`, each knowing the
    step's totals; under sharding, this process's share of each.

    A micro-batch is a Batch or a tuple of them by role (forget, retain; None where a method uses
    no such batch); anything else passes as drawn (and cannot be sharded). One micro-batch is the
    whole step: its own counts are the step's.
    """
    drawn = [next(micro_batches) for _ in range(count)]
    if count > 1 and all(isinstance(micro_batch, Batch) for micro_batch in drawn):
        drawn = share_step_totals(drawn)
    elif count > 1 and all(isinstance(micro_batch, tuple) and is_role_tuple(micro_batch) for micro_batch in drawn):
        drawn = list(zip(*(share_step_totals(role) for role in zip(*drawn))))
    return [on_device(group.share(micro_batch), device) for micro_batch in drawn]


def is_role_tuple(micro_batch: tuple) -> bool:
    return all(part is None or isinstance(part, Batch) for part in micro_batch)


def on_device(micro_batch: Any, device: torch.device | str) -> Any:
    """Batches are collated on the host; the model may live on a GPU."""
    if isinstance(micro_batch, Batch):
        return micro_batch.to(device)
    if isinstance(micro_batch, tuple) and is_role_tuple(micro_batch):
        return tuple(None if part is None else part.to(device) for part in micro_batch)
    return micro_batch


def _collapse(record: TrainRecord, step: int, reason: str) -> TrainRecord:
    log.warning("collapsed at step %d: %s", step, reason)
    record.collapsed, record.collapse_step, record.collapse_reason = True, step, reason
    return record


def cycle_batches(n_items: int, batch_size: int, seed: int) -> Iterator[list[int]]:
    """Endless index batches: a fresh seeded permutation each epoch, no partial batches unless
    there are fewer items than `batch_size`."""
    generator = torch.Generator().manual_seed(seed)
    size = min(batch_size, n_items)
    while True:
        order = torch.randperm(n_items, generator=generator).tolist()
        for start in range(0, n_items - size + 1, size):
            yield order[start : start + size]
