"""Gradient accumulation is exactly a larger batch, for every loss.

One optimiser step over two micro-batches of unequal sizes (in sequences and in real target
tokens, forget and retain alike) must step with the gradient, and record the loss, of one step
over a batch holding all their sequences: token means divide by the step's real targets of their
role, sequence means by its sequences.
"""

import copy

import pytest
import torch

from reversibility.methods import get_method, mean_nll
from reversibility.precision import Precision
from reversibility.tokenization import collate, encode
from reversibility.training import OptimSettings, train

FORGET = [
    "def add(a, b):\n    return a + b",
    "class Point:\n    def __init__(self, x, y):\n        self.x, self.y = x, y",
    "x = [i for i in range(3)]",
]
RETAIN = ["import os\nprint(os.sep)", "y = 1", "while True:\n    break\nelse:\n    pass"]
# A beta that leaves SimNPO's forget term a gradient; RMU at the micro model's last layer, with a
# steering coefficient and alpha that leave both of its terms a share of the gradient.
HYPERPARAMETERS = {
    "beta": 0.5,
    "gamma": 0.2,
    "lambda": 0.7,
    "layer": 1,
    "steering_coefficient": 2.0,
    "alpha": 5.0,
    "seed": 0,
}
# RLabel is left out: it draws its random labels per micro-batch from the global RNG, so two
# micro-batches draw other labels than one larger batch does and the two losses differ by design.
METHODS = ["ga", "ga_gd", "ga_kl", "npo", "npo_gd", "npo_kl", "simnpo", "rmu"]


def split(tokenizer, texts, first):
    """The texts as one batch and as two micro-batches: texts[:first] and texts[first:]."""
    sequences = encode(tokenizer, texts, 48)
    pad = tokenizer.pad_token_id
    return collate(sequences, pad), [collate(sequences[:first], pad), collate(sequences[first:], pad)]


def one_step(model, loss_fn, micro_batches, precision=Precision()):
    """The gradient the optimiser steps with (unclipped; loss scaling undone) in one `train` step
    over `micro_batches`, by parameter name, and the loss the step records. Weights the loss does
    not reach (after RMU's layer: the later layers, the final norm, the head) have no gradient."""
    from torch.optim.optimizer import register_optimizer_step_pre_hook

    model, captured = copy.deepcopy(model), {}
    names = {id(parameter): name for name, parameter in model.named_parameters()}

    def capture(optimizer, args, kwargs):
        captured.update(
            (names[id(p)], p.grad.detach().clone())
            for group in optimizer.param_groups
            for p in group["params"]
            if p.grad is not None
        )

    settings = OptimSettings(learning_rate=1e-3, max_grad_norm=None, grad_accumulation=len(micro_batches))
    handle = register_optimizer_step_pre_hook(capture)
    try:
        record = train(model, loss_fn, iter(micro_batches), 1, settings, precision=precision)
    finally:
        handle.remove()
    assert not record.collapsed and not record.steps[0].get("skipped") and captured
    return captured, record.steps[0]["loss"]


def assert_same_step(model, loss_fn, whole, parts):
    expected, expected_loss = one_step(model, loss_fn, [whole])
    accumulated, loss = one_step(model, loss_fn, parts)
    assert accumulated.keys() == expected.keys()
    for name, gradient in expected.items():
        # float32 rounding: relative to each element, and to the tensor's largest for near-zero ones
        torch.testing.assert_close(
            accumulated[name],
            gradient,
            rtol=1e-4,
            atol=1e-4 * gradient.abs().max().item(),
            msg=lambda detail, name=name: f"{name}: {detail}",
        )
    assert loss == pytest.approx(expected_loss, rel=1e-5)


@pytest.fixture
def moved_model(tiny_model):
    """The tiny model moved away from itself, its reference: NPO's ratios and the KL are not 0."""
    moved = copy.deepcopy(tiny_model)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for parameter in moved.parameters():
            parameter.add_(0.05 * torch.randn(parameter.shape, generator=generator))
    return moved


def test_the_micro_batches_differ_in_sequences_and_real_targets(tiny_tokenizer):
    for texts, first in ((FORGET, 1), (RETAIN, 2)):
        whole, (a, b) = split(tiny_tokenizer, texts, first)
        assert len(a) != len(b) and a.n_targets() != b.n_targets()
        assert a.n_targets() + b.n_targets() == whole.n_targets()


def test_fine_tuning_accumulates_to_the_larger_batch(tiny_model, tiny_tokenizer):
    whole, parts = split(tiny_tokenizer, RETAIN, 2)
    assert_same_step(tiny_model, mean_nll, whole, parts)


@pytest.mark.parametrize("name", METHODS)
def test_every_method_accumulates_to_the_larger_batch(name, tiny_model, moved_model, tiny_tokenizer):
    method = get_method(name)
    reference = tiny_model.requires_grad_(False) if method.uses_reference else None
    forget, forget_parts = split(tiny_tokenizer, FORGET, 1)
    retain, retain_parts = split(tiny_tokenizer, RETAIN, 2) if method.uses_retain else (None, [None, None])

    def loss(model, pair):  # as unlearning.unlearn_requests calls a method
        forget_batch, retain_batch = pair
        return method.loss(model, forget_batch, retain_batch, reference, HYPERPARAMETERS)

    assert_same_step(moved_model, loss, (forget, retain), list(zip(forget_parts, retain_parts)))


def test_float16_loss_scaling_accumulates_to_the_larger_batch(tiny_model, tiny_tokenizer):
    float16 = Precision(torch.float16, "cpu")
    assert float16.scales_loss
    whole, parts = split(tiny_tokenizer, RETAIN, 2)
    expected, _ = one_step(tiny_model, mean_nll, [whole], float16)
    accumulated, _ = one_step(tiny_model, mean_nll, parts, float16)
    for name, gradient in expected.items():  # float16 arithmetic: about 1e-3 apart
        assert (accumulated[name] - gradient).norm() <= 1e-2 * gradient.norm() + 1e-6, name


def test_one_micro_batch_is_passed_as_drawn(tiny_tokenizer):
    from reversibility.training import step_micro_batches

    whole, _ = split(tiny_tokenizer, FORGET, 1)
    (drawn,) = step_micro_batches(iter([(whole, None)]), 1)
    assert drawn[0] is whole and drawn[0].step_targets is None and drawn[1] is None


def test_every_micro_batch_of_a_step_knows_the_totals_of_its_role(tiny_tokenizer):
    from reversibility.training import step_micro_batches

    forget, forget_parts = split(tiny_tokenizer, FORGET, 1)
    retain, retain_parts = split(tiny_tokenizer, RETAIN, 2)
    drawn = step_micro_batches(iter(list(zip(forget_parts, retain_parts))), 2)
    for forget_part, retain_part in drawn:
        assert (forget_part.step_targets, forget_part.step_sequences) == (forget.n_targets(), 3)
        assert (retain_part.step_targets, retain_part.step_sequences) == (retain.n_targets(), 3)
    only_forget = step_micro_batches(iter([(part, None) for part in forget_parts]), 2)
    assert [retain_part for _, retain_part in only_forget] == [None, None]
