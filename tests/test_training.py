import math

import pytest
import torch

from reversibility.methods import mean_nll
from reversibility.tokenization import encode
from reversibility.training import OptimSettings, cycle_batches, lr_factor, train
from reversibility.unlearning import finetune

TEXTS = [
    "def add(a, b):\n    return a + b",
    "class Point:\n    pass",
    "x = [i for i in range(3)]",
    "import os\nprint(os.sep)",
]


def test_warmup_then_cosine_to_the_floor():
    settings = OptimSettings(learning_rate=1.0, warmup_steps=4, schedule="cosine", min_lr_ratio=0.1)
    assert [lr_factor(s, 20, settings) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert lr_factor(4, 20, settings) == pytest.approx(1.0)
    assert lr_factor(12, 20, settings) == pytest.approx(0.55)
    assert lr_factor(20, 20, settings) == pytest.approx(0.1)


def test_cycle_batches_covers_every_item_each_epoch():
    stream = cycle_batches(6, 2, seed=0)
    epoch = [i for _ in range(3) for i in next(stream)]
    assert sorted(epoch) == list(range(6))
    assert next(cycle_batches(3, 8, seed=0)).__len__() == 3


def test_training_is_bit_for_bit_repeatable(tiny_model, tiny_tokenizer):
    import copy

    sequences = encode(tiny_tokenizer, TEXTS, 24)
    runs = []
    for _ in range(2):
        model = copy.deepcopy(tiny_model)
        finetune(
            model,
            sequences,
            steps=6,
            batch_size=2,
            optim=OptimSettings(learning_rate=1e-2),
            pad_id=tiny_tokenizer.pad_token_id,
            seed=3,
        )
        runs.append([p.detach().clone() for p in model.parameters()])
    assert all(torch.equal(a, b) for a, b in zip(*runs))
    assert not all(torch.equal(a, b) for a, b in zip(runs[0], tiny_model.parameters()))


def test_finetuning_lowers_the_loss(tiny_model, tiny_tokenizer):
    from reversibility.tokenization import collate

    sequences = encode(tiny_tokenizer, TEXTS, 24)
    batch = collate(sequences, tiny_tokenizer.pad_token_id)
    before = mean_nll(tiny_model, batch).item()
    finetune(
        tiny_model,
        sequences,
        steps=30,
        batch_size=4,
        optim=OptimSettings(learning_rate=1e-2),
        pad_id=tiny_tokenizer.pad_token_id,
        seed=0,
    )
    assert mean_nll(tiny_model, batch).item() < before - 0.5


def test_a_non_finite_loss_stops_training_and_marks_the_collapse(tiny_model):
    calls = []

    def exploding(model, _batch):
        calls.append(1)
        value = 1e-3 * sum(p.square().sum() for p in model.parameters())
        return value + (math.inf if len(calls) == 3 else 0.0)

    before = [p.detach().clone() for p in tiny_model.parameters()]
    record = train(tiny_model, exploding, iter(range(100)), total_steps=10, settings=OptimSettings(learning_rate=1e-3))
    assert record.collapsed and record.collapse_step == 2 and len(record.steps) == 2
    assert "non-finite loss" in record.collapse_reason
    assert all(torch.isfinite(p).all() for p in tiny_model.parameters())
    assert len(calls) == 3 and any(not torch.equal(a, b) for a, b in zip(before, tiny_model.parameters()))


def test_a_non_finite_loss_in_an_accumulated_micro_batch_stops_training(tiny_model):
    calls = []

    def exploding(model, _batch):
        calls.append(1)
        value = 1e-3 * sum(p.square().sum() for p in model.parameters())
        return value + (math.inf if len(calls) == 4 else 0.0)

    record = train(
        tiny_model,
        exploding,
        iter(range(100)),
        total_steps=10,
        settings=OptimSettings(learning_rate=1e-3, grad_accumulation=2),
    )
    # The second step's second micro-batch: one step done, and its update kept.
    assert record.collapsed and record.collapse_step == 1 and len(record.steps) == 1
    assert "non-finite loss" in record.collapse_reason and len(calls) == 4
    assert all(torch.isfinite(p).all() for p in tiny_model.parameters())


def test_the_record_holds_the_loss_of_the_whole_step(tiny_model, tiny_tokenizer):
    """Accumulated micro-batches record the loss of the batch they make up, not the mean of theirs."""
    from reversibility.tokenization import collate

    sequences = encode(tiny_tokenizer, TEXTS, 24)
    pad = tiny_tokenizer.pad_token_id
    parts = [collate(sequences[:1], pad), collate(sequences[1:], pad)]
    with torch.no_grad():
        whole = mean_nll(tiny_model, collate(sequences, pad)).item()
    record = train(tiny_model, mean_nll, iter(parts), 1, OptimSettings(learning_rate=1e-3, grad_accumulation=2))
    assert record.steps[0]["loss"] == pytest.approx(whole, rel=1e-5)


def test_every_micro_batch_reaches_the_device_of_the_weights(tiny_model, tiny_tokenizer, monkeypatch):
    """Batches are collated on the host; on a GPU the loop must hand them to the model's device
    (for every role of an unlearning micro-batch too), or the first forward pass fails."""
    from reversibility.tokenization import Batch, collate

    moved = []
    original = Batch.to

    def recording(batch, device):
        moved.append(torch.device(device))
        return original(batch, device)

    monkeypatch.setattr(Batch, "to", recording)
    sequences = encode(tiny_tokenizer, TEXTS, 24)
    pad = tiny_tokenizer.pad_token_id
    pairs = iter([(collate(sequences[:2], pad), collate(sequences[2:], pad)), (collate(sequences[2:], pad), None)])
    train(tiny_model, lambda model, pair: mean_nll(model, pair[0]), pairs, 2, OptimSettings(learning_rate=1e-3))
    assert moved == [next(tiny_model.parameters()).device] * 3
