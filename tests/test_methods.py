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


class FixedLogits(torch.nn.Module):
    """A 'model' whose next-token logits are given (plus a learnable offset, for gradients)."""

    def __init__(self, logits):
        super().__init__()
        self.logits = logits
        self.offset = torch.nn.Parameter(torch.zeros(()))

    def forward(self, input_ids, attention_mask):
        return type("Output", (), {"logits": self.logits + self.offset})()


def fixed_batch():
    # Two sequences of 3 tokens over a vocabulary of 3; the second has one pad at the end.
    input_ids = torch.tensor([[0, 1, 2], [0, 2, 0]])
    attention_mask = torch.tensor([[1, 1, 1], [1, 1, 0]])
    labels = input_ids.masked_fill(attention_mask == 0, -100)
    from reversibility.tokenization import Batch

    return Batch(input_ids, attention_mask, labels)


LOGITS = torch.log(torch.tensor([
    [[0.2, 0.5, 0.3], [0.1, 0.1, 0.8], [0.3, 0.3, 0.4]],
    [[0.6, 0.2, 0.2], [0.5, 0.25, 0.25], [0.3, 0.3, 0.4]],
]))
REFERENCE = torch.log(torch.tensor([
    [[0.4, 0.4, 0.2], [0.2, 0.2, 0.6], [0.3, 0.3, 0.4]],
    [[0.3, 0.3, 0.4], [0.5, 0.25, 0.25], [0.3, 0.3, 0.4]],
]))
# Real targets: row 0 -> tokens 1 then 2 (p = 0.5, 0.8); row 1 -> token 2 (p = 0.2); the pad has none.
TARGET_P = [[0.5, 0.8], [0.2]]


def test_retain_terms_by_hand():
    from reversibility.methods import retain_kl, retain_nll

    model, reference, batch = FixedLogits(LOGITS), FixedLogits(REFERENCE), fixed_batch()
    nll = [-math.log(p) for p in TARGET_P[0] + TARGET_P[1]]
    assert retain_nll(model, batch).item() == pytest.approx(sum(nll) / 3, rel=1e-6)
    assert retain_nll(model, batch, "sequence").item() == pytest.approx(sum(nll) / 2, rel=1e-6)

    def kl(p, q):
        return sum(float(a) * math.log(float(a) / float(b)) for a, b in zip(p, q))
    p_ref, p = REFERENCE.exp(), LOGITS.exp()
    per_token = [kl(p_ref[0, 0], p[0, 0]), kl(p_ref[0, 1], p[0, 1]), kl(p_ref[1, 0], p[1, 0])]
    assert retain_kl(model, reference, batch).item() == pytest.approx(sum(per_token) / 3, rel=1e-5)
    assert retain_kl(model, reference, batch, "sequence").item() == pytest.approx(sum(per_token) / 2, rel=1e-5)
    assert retain_kl(model, model, batch).item() == pytest.approx(0.0, abs=1e-7)


def test_every_method_by_hand_on_fixed_logits():
    model, reference, forget, retain = FixedLogits(LOGITS), FixedLogits(REFERENCE), fixed_batch(), fixed_batch()
    ce = sum(-math.log(p) for row in TARGET_P for p in row) / 3
    seq_nll = sum(-math.log(p) for row in TARGET_P for p in row) / 2
    seq_logp = [sum(math.log(p) for p in row) for row in TARGET_P]
    ref_logp = [math.log(0.4) + math.log(0.6), math.log(0.4)]
    beta, lam, gamma = 0.5, 2.0, 0.3

    def softplus(x):
        return math.log1p(math.exp(x))

    npo_value = sum(2 / beta * softplus(beta * (a - b)) for a, b in zip(seq_logp, ref_logp)) / 2
    lengths = [2, 1]
    simnpo_value = sum(2 / beta * softplus(beta * lp / n + gamma) for lp, n in zip(seq_logp, lengths)) / 2
    expected = {
        "ga": -ce,
        "ga_gd": -ce + lam * ce,
        "ga_kl": -ce,                       # model = reference on the retain side: KL = 0
        "npo": npo_value,
        "npo_gd": npo_value + lam * seq_nll,
        "simnpo": simnpo_value,
        "finetune": ce,
    }
    hp = {"beta": beta, "lambda": lam, "gamma": gamma}
    for name, value in expected.items():
        ref = model if name == "ga_kl" else reference
        loss = get_method(name).loss(model, forget, retain, ref, hp)
        assert loss.item() == pytest.approx(value, rel=1e-5), name


def test_random_labels_are_uniform_and_keep_pads_masked():
    from reversibility.methods import random_labels

    torch.manual_seed(0)
    labels = torch.full((64, 200), 5)
    labels[:, 150:] = -100
    drawn = random_labels(labels, vocab_size=10)
    assert (drawn[:, 150:] == -100).all()
    counts = torch.bincount(drawn[:, :150].flatten(), minlength=10).float()
    expected = 64 * 150 / 10
    chi_square = ((counts - expected) ** 2 / expected).sum().item()
    assert chi_square < 30  # 9 degrees of freedom: p > 0.999 for a fair draw
    assert not torch.equal(random_labels(labels, 10), drawn)


def test_rlabel_trains_towards_its_random_labels(tiny_model, tiny_tokenizer):
    batch = batch_of(tiny_tokenizer, TEXTS)
    torch.manual_seed(1)
    loss = get_method("rlabel").loss(tiny_model, batch, None, None, {})
    # Random labels over the vocabulary are about as likely as uniform: loss near log(V).
    assert abs(loss.item() - math.log(len(tiny_tokenizer))) < 1.0


def test_every_registered_method_has_a_documented_config_default():
    from reversibility.methods import hyperparameters

    assert set(METHODS) == {"ga", "ga_gd", "ga_kl", "npo", "npo_gd", "npo_kl", "rlabel", "simnpo", "finetune"}
    assert hyperparameters("simnpo", None) == {"beta": 2.5, "gamma": 0.0}
    assert hyperparameters("npo_kl", {"lambda": 5.0}) == {"beta": 0.1, "lambda": 5.0}
