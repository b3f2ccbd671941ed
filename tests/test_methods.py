import math

import numpy as np
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
    first_row_only = collate(
        [padded.input_ids[0][padded.attention_mask[0].bool()].tolist()], tiny_tokenizer.pad_token_id
    )
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


# Two sequences of 3 tokens over a vocabulary of 3. The forget batch's second row ends with a pad;
# the retain batch pads its first row instead, so its real targets sit at other positions.
FORGET_IDS, FORGET_MASK = [[0, 1, 2], [0, 2, 0]], [[1, 1, 1], [1, 1, 0]]
RETAIN_IDS, RETAIN_MASK = [[0, 2, 0], [0, 1, 1]], [[1, 1, 0], [1, 1, 1]]


def batch_from(input_ids, attention_mask):
    from reversibility.tokenization import Batch

    input_ids, attention_mask = torch.tensor(input_ids), torch.tensor(attention_mask)
    return Batch(input_ids, attention_mask, input_ids.masked_fill(attention_mask == 0, -100))


def fixed_batch():
    return batch_from(FORGET_IDS, FORGET_MASK)


def retain_batch():
    return batch_from(RETAIN_IDS, RETAIN_MASK)


# Next-token probabilities at each position of each row: the model's and the reference's.
MODEL_P = [
    [[0.2, 0.5, 0.3], [0.1, 0.1, 0.8], [0.3, 0.3, 0.4]],
    [[0.6, 0.2, 0.2], [0.5, 0.25, 0.25], [0.3, 0.3, 0.4]],
]
REFERENCE_P = [
    [[0.4, 0.4, 0.2], [0.2, 0.2, 0.6], [0.3, 0.3, 0.4]],
    [[0.3, 0.3, 0.4], [0.5, 0.25, 0.25], [0.3, 0.3, 0.4]],
]
LOGITS = torch.log(torch.tensor(MODEL_P))
REFERENCE = torch.log(torch.tensor(REFERENCE_P))
# Real targets: row 0 -> tokens 1 then 2 (p = 0.5, 0.8); row 1 -> token 2 (p = 0.2); the pad has none.
TARGET_P = [[0.5, 0.8], [0.2]]


# --------------------------------------------------------------------------- by hand, in floats


def real_targets(input_ids, attention_mask):
    """(row, position, token) of each real next-token target: position t predicts token t + 1."""
    return [
        (row, t, ids[t + 1])
        for row, (ids, mask) in enumerate(zip(input_ids, attention_mask))
        for t in range(len(ids) - 1)
        if mask[t + 1]
    ]


def hand_cross_entropy(input_ids, attention_mask):
    targets = real_targets(input_ids, attention_mask)
    return sum(-math.log(MODEL_P[row][t][token]) for row, t, token in targets) / len(targets)


def hand_kl(input_ids, attention_mask):
    """KL(p_ref || p_model) averaged over the real target positions."""
    positions = [(row, t) for row, t, _ in real_targets(input_ids, attention_mask)]
    return sum(
        sum(q * math.log(q / p) for q, p in zip(REFERENCE_P[row][t], MODEL_P[row][t])) for row, t in positions
    ) / len(positions)


def hand_sequence_logprobs(table, input_ids, attention_mask):
    """Per row: the sum of the target log-probabilities and the number of targets."""
    sums, counts = [0.0] * len(input_ids), [0] * len(input_ids)
    for row, t, token in real_targets(input_ids, attention_mask):
        sums[row] += math.log(table[row][t][token])
        counts[row] += 1
    return sums, counts


def softplus(x):
    return math.log1p(math.exp(x))


def hand_npo(beta):
    logp, _ = hand_sequence_logprobs(MODEL_P, FORGET_IDS, FORGET_MASK)
    ref_logp, _ = hand_sequence_logprobs(REFERENCE_P, FORGET_IDS, FORGET_MASK)
    # -(2/beta) log sigmoid(-beta r) = (2/beta) softplus(beta r), averaged over sequences
    return sum(2 / beta * softplus(beta * (a - b)) for a, b in zip(logp, ref_logp)) / len(logp)


def hand_simnpo_forget_term(beta, gamma):
    logp, lengths = hand_sequence_logprobs(MODEL_P, FORGET_IDS, FORGET_MASK)
    return sum(2 / beta * softplus(beta * lp / n + gamma) for lp, n in zip(logp, lengths)) / len(logp)


BETA, LAMBDA, GAMMA = 0.5, 2.0, 0.3


def hand_losses():
    forget_ce = hand_cross_entropy(FORGET_IDS, FORGET_MASK)
    retain_ce = hand_cross_entropy(RETAIN_IDS, RETAIN_MASK)
    retain_kl = hand_kl(RETAIN_IDS, RETAIN_MASK)
    return {
        "ga": -forget_ce,
        "ga_gd": -forget_ce + LAMBDA * retain_ce,
        "ga_kl": -forget_ce + LAMBDA * retain_kl,
        "npo": hand_npo(BETA),
        "npo_gd": hand_npo(BETA) + LAMBDA * retain_ce,
        "npo_kl": hand_npo(BETA) + LAMBDA * retain_kl,
        "simnpo": hand_simnpo_forget_term(BETA, GAMMA) + LAMBDA * retain_ce,
        "finetune": retain_ce,
    }


def test_the_hand_worked_tables_read_as_documented():
    forget_p = [MODEL_P[row][t][token] for row, t, token in real_targets(FORGET_IDS, FORGET_MASK)]
    assert forget_p == TARGET_P[0] + TARGET_P[1]
    assert real_targets(RETAIN_IDS, RETAIN_MASK) == [(0, 0, 2), (1, 0, 1), (1, 1, 1)]
    assert hand_kl(RETAIN_IDS, RETAIN_MASK) > 0.05  # the model is not its reference there


def test_retain_terms_by_hand():
    from reversibility.methods import retain_kl

    model, reference, batch = FixedLogits(LOGITS), FixedLogits(REFERENCE), retain_batch()
    ce = (-math.log(0.3) - math.log(0.2) - math.log(0.25)) / 3
    assert mean_nll(model, batch).item() == pytest.approx(ce, rel=1e-6)
    assert mean_nll(model, batch).item() == pytest.approx(hand_cross_entropy(RETAIN_IDS, RETAIN_MASK), rel=1e-6)
    assert retain_kl(model, reference, batch).item() == pytest.approx(hand_kl(RETAIN_IDS, RETAIN_MASK), rel=1e-5)
    assert retain_kl(model, model, batch).item() == pytest.approx(0.0, abs=1e-7)


@pytest.mark.parametrize("name", ["ga", "ga_gd", "ga_kl", "npo", "npo_gd", "npo_kl", "simnpo", "finetune"])
def test_every_combined_loss_by_hand_with_the_model_away_from_its_reference(name):
    """Token-mean retain terms (cross-entropy and KL) beside NPO's sequence sums and SimNPO's
    length-normalised ones, on a retain batch other than the forget batch."""
    model, reference = FixedLogits(LOGITS), FixedLogits(REFERENCE)
    hp = {"beta": BETA, "lambda": LAMBDA, "gamma": GAMMA}
    loss = get_method(name).loss(model, fixed_batch(), retain_batch(), reference, hp)
    assert loss.item() == pytest.approx(hand_losses()[name], rel=1e-5)


def test_rlabel_by_hand_on_its_own_draw():
    from reversibility.methods import random_labels

    torch.manual_seed(7)
    drawn = torch.randint(3, (2, 3)).tolist()  # the draw RLabel makes: labels' shape, vocabulary 3
    targets = [(row, t, drawn[row][t + 1]) for row, t, _ in real_targets(FORGET_IDS, FORGET_MASK)]
    assert targets != real_targets(FORGET_IDS, FORGET_MASK)  # a draw unlike fine-tuning's labels
    expected = sum(-math.log(MODEL_P[row][t][token]) for row, t, token in targets) / len(targets)

    torch.manual_seed(7)
    loss = get_method("rlabel").loss(FixedLogits(LOGITS), fixed_batch(), None, None, {})
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    torch.manual_seed(7)
    labels = random_labels(fixed_batch().labels, 3).tolist()
    assert labels[1][2] == -100 and all(label != -100 for label in labels[0] + labels[1][:2])


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

    assert set(METHODS) == {"ga", "ga_gd", "ga_kl", "npo", "npo_gd", "npo_kl", "rlabel", "simnpo", "rmu", "finetune"}
    # SimNPO's beta, gamma and retain weight: the SimNPO authors' TOFU forget05 config (methods.py)
    assert hyperparameters("simnpo", None) == {"beta": 2.5, "gamma": 0.0, "lambda": pytest.approx(1 / 0.1375)}
    assert METHODS["simnpo"].uses_retain and not METHODS["simnpo"].uses_reference
    assert hyperparameters("npo_kl", {"lambda": 5.0}) == {"beta": 0.1, "lambda": 5.0}
    # RMU's layer, c and alpha: WMDP's Zephyr-7B run (methods.py); u drawn from `seed`
    assert hyperparameters("rmu", None) == {"layer": 7, "steering_coefficient": 6.5, "alpha": 1200.0, "seed": 0}
    assert METHODS["rmu"].uses_retain and METHODS["rmu"].uses_reference


# --------------------------------------------------------------------------- RMU

RETAIN_TEXTS = ["import os", "y = 1\nz = [y, y]\nprint(z)"]
RMU_HP = {"layer": 0, "steering_coefficient": 0.5, "alpha": 3.0, "seed": 0}  # a c near the states' norms


def moved_copy(model, scale=0.05, seed=3):
    """The model with every weight nudged: a model away from its reference."""
    import copy

    moved, generator = copy.deepcopy(model), torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in moved.parameters():
            parameter.add_(scale * torch.randn(parameter.shape, generator=generator))
    return moved


def hand_direction(hidden_size, seed):
    """u: uniform [0, 1) coordinates from a generator seeded with `seed`, normalised (in float64)."""
    drawn = torch.rand(hidden_size, generator=torch.Generator().manual_seed(seed)).double().numpy()
    return drawn / np.sqrt((drawn**2).sum())


def hidden_state(model, batch, index):
    """hidden_states[index] of the model on the batch: [B, T, H] float64."""
    with torch.no_grad():
        out = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask, output_hidden_states=True)
    return out.hidden_states[index].double().numpy()


def hand_squared_distance(states, targets, attention_mask):
    """Mean over real tokens of ||states - targets||^2 / hidden size, token by token."""
    hidden = states.shape[-1]
    values = [
        ((states[row, t] - (targets[row, t] if targets.ndim == 3 else targets)) ** 2).sum() / hidden
        for row in range(states.shape[0])
        for t in range(states.shape[1])
        if attention_mask[row][t]
    ]
    return sum(values) / len(values)


def test_rmu_by_hand_with_the_model_away_from_its_reference(tiny_model, tiny_tokenizer):
    """hidden_states[l + 1] is decoder layer l's output for every layer but the last."""
    forget, retain = batch_of(tiny_tokenizer, TEXTS), batch_of(tiny_tokenizer, RETAIN_TEXTS)
    assert (forget.attention_mask == 0).any() and (retain.attention_mask == 0).any()  # both padded
    model = moved_copy(tiny_model)
    states, ref_states = hidden_state(model, retain, 1), hidden_state(tiny_model, retain, 1)
    forget_states = hidden_state(model, forget, 1)
    control = RMU_HP["steering_coefficient"] * hand_direction(forget_states.shape[-1], RMU_HP["seed"])
    mask, retain_mask = forget.attention_mask.tolist(), retain.attention_mask.tolist()
    forget_term = hand_squared_distance(forget_states, control, mask)
    retain_term = hand_squared_distance(states, ref_states, retain_mask)
    assert retain_term > 1e-4  # the model is not its reference there
    loss = get_method("rmu").loss(model, forget, retain, tiny_model, RMU_HP)
    assert loss.item() == pytest.approx(forget_term + RMU_HP["alpha"] * retain_term, rel=1e-5)
    # Pads count for nothing: counting them would give another value.
    with_pads = hand_squared_distance(forget_states, control, np.ones_like(np.array(mask)))
    assert abs(with_pads - forget_term) > 1e-3 * forget_term


def test_rmu_reads_the_last_layers_output_before_the_final_norm(tiny_model, tiny_tokenizer):
    forget, retain = batch_of(tiny_tokenizer, TEXTS), batch_of(tiny_tokenizer, RETAIN_TEXTS)
    hp = {**RMU_HP, "layer": 1}
    unnormed = moved_copy(tiny_model)
    unnormed.model.norm = torch.nn.Identity()  # its last hidden state is then the last layer's output
    states = hidden_state(unnormed, forget, 2)
    control = hp["steering_coefficient"] * hand_direction(states.shape[-1], hp["seed"])
    expected = hand_squared_distance(states, control, forget.attention_mask.tolist())
    loss = get_method("rmu").loss(moved_copy(tiny_model), forget, retain, moved_copy(tiny_model), hp)
    assert loss.item() == pytest.approx(expected, rel=1e-5)


def test_rmu_retain_term_is_zero_at_the_reference(tiny_model, tiny_tokenizer):
    forget, retain = batch_of(tiny_tokenizer, TEXTS), batch_of(tiny_tokenizer, RETAIN_TEXTS)
    losses = [
        get_method("rmu").loss(tiny_model, forget, retain, tiny_model, {**RMU_HP, "alpha": alpha}).item()
        for alpha in (0.0, 1.0, 1200.0)
    ]
    assert losses[0] > 0 and losses == pytest.approx([losses[0]] * 3, rel=1e-7)


def test_rmu_direction_is_a_fixed_unit_vector_per_seed():
    from reversibility.methods import random_direction

    u = random_direction(4096, 0)
    assert u.norm().item() == pytest.approx(1.0, rel=1e-6) and (u >= 0).all()
    assert torch.equal(u, random_direction(4096, 0))
    torch.manual_seed(123)  # the global RNG plays no part
    assert torch.allclose(u.double(), torch.tensor(hand_direction(4096, 0)), rtol=1e-6, atol=0)
    assert not torch.allclose(u, random_direction(4096, 1))


@pytest.mark.parametrize("layer", [2, 7, -1, 0.5, "1"])
def test_rmu_refuses_a_layer_the_model_lacks_naming_the_key(layer, tiny_model, tiny_tokenizer):
    batch = batch_of(tiny_tokenizer, TEXTS)
    with pytest.raises(
        ValueError,
        match=r"methods\.rmu\.layer: .*decoder layers are 0 to 1|"
        r"methods\.rmu\.layer: .*which has 2 layers \(0 to 1\)",
    ):
        get_method("rmu").loss(tiny_model, batch, batch, tiny_model, {**RMU_HP, "layer": layer})
