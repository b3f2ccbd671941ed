"""Continual unlearning (N sequential requests) and relearning, on top of the shared loop."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Callable, Collection, Iterator, Mapping, Sequence

from .methods import Method, mean_nll
from .precision import Precision
from .tokenization import Batch, collate
from .training import OptimSettings, TrainRecord, cycle_batches, train

log = logging.getLogger(__name__)


def batch_stream(sequences: Sequence[Sequence[int]], batch_size: int, pad_id: int, seed: int) -> Iterator[Batch]:
    """Endless shuffled batches of `sequences` (the whole set when it fits in one batch)."""
    for indices in cycle_batches(len(sequences), batch_size, seed):
        yield collate([sequences[i] for i in indices], pad_id)


@dataclass(frozen=True)
class UnlearnPlan:
    steps_per_request: int
    batch_size: int
    retain_batch_size: int
    optim: OptimSettings


def unlearn_requests(
    model,
    reference,
    method: Method,
    hp: Mapping[str, Any],
    requests: Sequence[Sequence[Sequence[int]]],
    retain: Sequence[Sequence[int]],
    plan: UnlearnPlan,
    pad_id: int,
    seed: int,
    after_request: Callable[[int], dict] | None = None,
    precision: Precision = Precision(),
) -> TrainRecord:
    """Unlearn the requests one after another, each with a fresh optimiser.

    The reference model stays the model from before the first request. Training stops at the
    first collapse (a non-finite loss, gradient or weight). `after_request(r)` is recorded in
    `record.evaluations` after each request r (the metrics-after-each-request curve).
    """
    record = TrainRecord()
    retain_stream = batch_stream(retain, plan.retain_batch_size, pad_id, seed + 1) if method.uses_retain else None
    for index, request in enumerate(requests, 1):
        forget_stream = batch_stream(request, plan.batch_size, pad_id, seed + 1000 + index)

        def micro_batches():
            while True:
                yield next(forget_stream), next(retain_stream) if retain_stream else None

        def loss(model_, pair):
            forget, retain_batch = pair
            return method.loss(model_, forget, retain_batch, reference, hp)

        done = len(record.steps)
        train(
            model,
            loss,
            micro_batches(),
            plan.steps_per_request,
            plan.optim,
            desc=f"request {index}/{len(requests)}",
            log_every=plan.steps_per_request,
            record=record,
            step_offset=(index - 1) * plan.steps_per_request,
            precision=precision,
        )
        for entry in record.steps[done:]:
            entry["request"] = index
        if record.collapsed:
            log.warning("unlearning collapsed during request %d", index)
            break
        if after_request is not None:
            with precision.autocast():
                record.evaluations.append({"request": index, **after_request(index)})
    return record


def finetune(
    model,
    sequences: Sequence[Sequence[int]],
    steps: int,
    batch_size: int,
    optim: OptimSettings,
    pad_id: int,
    seed: int,
    desc: str = "finetune",
    evaluate: Callable[[], dict] | None = None,
    evaluate_every: int = 0,
    evaluate_at: Collection[int] = (),
    precision: Precision = Precision(),
) -> TrainRecord:
    """Plain next-token training for a fixed number of optimiser steps (base training, relearning)."""
    stream = batch_stream(sequences, batch_size, pad_id, seed)
    return train(
        model,
        mean_nll,
        stream,
        steps,
        optim,
        desc=desc,
        log_every=max(1, steps // 20),
        evaluate=evaluate,
        evaluate_every=evaluate_every,
        evaluate_at=evaluate_at,
        precision=precision,
    )
