import math

import pytest
import torch

from reversibility.methods import METHODS, get_method, hyperparameters, mean_nll, sequence_logprob
from reversibility.tokenization import collate


def batch_of(tokenizer, texts):
    from reversibility.tokenization import encode

    return collate(encode(tokenizer, texts, max_length=24), tokenizer.pad_token_id)


TEXTS = ["def add(a, b):\n    return a + b", "class Point:\n    pass", "x = [i for i in range(3)]"]


def test_mean_nll_ignores_padding(tiny_model, tiny_tokenizer):
    alone = batch_of(tiny_tokenizer, TEXTS[1:2])
    padded = batch_of(tiny_tokenizer, TEXTS[1:2] + ["y = " + "1 + " * 10])  # forces padding on row 0
    first_row_only = collate([padded.input_ids[0][padded.attention_mask[0].bool()].tolist()],
                             tiny_tokenizer.pad_token_id)
    assert padded.input_ids.shape[1] > alone.input_ids.shape[1]
    # The padded row's own loss equals the unpadded loss: pads add no target.
    with torch.no_grad():
        row_logprob = sequence_logprob(tiny_model, padded)[0]
        assert torch.allclose(row_logprob, sequence_logprob(tiny_model, first_row_only)[0], atol=1e-5)
        assert torch.allclose(mean_nll(tiny_model, alone), mean_nll(tiny_model, first_row_only))


def test_mean_nll_matches_a_hand_computed_cross_entropy(tiny_model, tiny_tokenizer):
    batch = batch_of(tiny_tokenizer, TEXTS[:2])
    with torch.no_grad():
        logits = tiny_model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
        total, count = 0.0, 0
        for row in range(2):
            length = int(batch.attention_mask[row].sum())
            for t in range(length - 1):
                total -= torch.log_softmax(logits[row, t], -1)[batch.input_ids[row, t + 1]].item()
                count += 1
        assert mean_nll(tiny_model, batch).item() == pytest.approx(total / count, rel=1e-5)


def test_gradient_ascent_gradient_is_minus_the_finetuning_gradient(tiny_model, tiny_tokenizer):
    batch = batch_of(tiny_tokenizer, TEXTS)
    mean_nll(tiny_model, batch).backward()
    finetune = [p.grad.clone() for p in tiny_model.parameters()]
    tiny_model.zero_grad()
    get_method("ga").loss(tiny_model, batch, None, None, {}).backward()
    for g_ft, p in zip(finetune, tiny_model.parameters()):
        assert torch.allclose(p.grad, -g_ft)


def test_npo_at_the_reference_is_two_over_beta_log_two(tiny_model, tiny_tokenizer):
    batch = batch_of(tiny_tokenizer, TEXTS)
    for beta in (0.1, 0.5):
        loss = get_method("npo").loss(tiny_model, batch, None, tiny_model, {"beta": beta})
        assert loss.item() == pytest.approx(2 / beta * math.log(2), rel=1e-6)


def test_npo_matches_its_formula_away_from_the_reference(tiny_model, tiny_tokenizer):
    import copy

    batch = batch_of(tiny_tokenizer, TEXTS)
    moved = copy.deepcopy(tiny_model)
    with torch.no_grad():
        moved.model.norm.weight.mul_(3.0)
        ratios = (sequence_logprob(moved, batch) - sequence_logprob(tiny_model, batch)).tolist()
    beta = 0.2
    expected = sum(2 / beta * math.log(1 + math.exp(beta * r)) for r in ratios) / len(ratios)
    loss = get_method("npo").loss(moved, batch, None, tiny_model, {"beta": beta})
    assert loss.item() == pytest.approx(expected, rel=1e-5)


def test_method_hyperparameters_default_and_override():
    assert hyperparameters("npo", None) == {"beta": 0.1}
    assert hyperparameters("npo", {"beta": 0.5}) == {"beta": 0.5}
    with pytest.raises(KeyError, match="unknown unlearning method 'nope'"):
        get_method("nope")
    assert {"ga", "npo"} <= set(METHODS)
