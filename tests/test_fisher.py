import numpy as np
import pytest
import torch
from scipy.spatial.distance import jensenshannon

from reversibility.fisher import (
    BINS,
    decoder_layer_paths,
    diagonal_fisher,
    fisher_prefixes,
    histogram_distance,
    layer_parameters,
    loop_fisher,
    summarise,
)
from reversibility.tokenization import encode

TEXTS = [
    "def add(a, b):\n    return a + b",
    "class Point:\n    pass",
    "x = [i for i in range(3)]",
    "import os\nprint(os.sep)",
    "while True:\n    break",
]


def test_vectorised_fisher_equals_a_per_sample_loop(tiny_model, tiny_tokenizer, device):
    tiny_model.to(device)
    sequences = encode(tiny_tokenizer, TEXTS, 24)
    layers = decoder_layer_paths(tiny_model)
    fast = diagonal_fisher(tiny_model, sequences, tiny_tokenizer.pad_token_id, layers, chunk_size=3)
    slow = loop_fisher(tiny_model, sequences, tiny_tokenizer.pad_token_id, layers)
    for path in layers:
        assert fast[path].keys() == slow[path].keys() and fast[path]
        for name in fast[path]:
            torch.testing.assert_close(fast[path][name], slow[path][name].cpu(), rtol=1e-5, atol=1e-12)


def test_blocks_of_samples_that_split_a_chunk_give_the_same_fisher(tiny_model, tiny_tokenizer, monkeypatch):
    import reversibility.fisher

    sequences = encode(tiny_tokenizer, TEXTS, 24)
    layers = decoder_layer_paths(tiny_model)
    slow = loop_fisher(tiny_model, sequences, tiny_tokenizer.pad_token_id, layers)
    monkeypatch.setattr(reversibility.fisher, "_block_rows", lambda device, weight_size: 2)  # 5 = 2 + 2 + 1
    fast = diagonal_fisher(tiny_model, sequences, tiny_tokenizer.pad_token_id, layers, chunk_size=5)
    for path in layers:
        for name in fast[path]:
            torch.testing.assert_close(fast[path][name], slow[path][name], rtol=1e-5, atol=1e-12)


def test_padding_a_sample_changes_no_fisher_value(tiny_model, tiny_tokenizer, device):
    tiny_model.to(device)
    short, long = encode(tiny_tokenizer, ["x = 1", "def f(a, b, c):\n    return a * b + c"], 24)
    layers = decoder_layer_paths(tiny_model)
    alone = diagonal_fisher(tiny_model, [short], tiny_tokenizer.pad_token_id, layers)
    padded = diagonal_fisher(tiny_model, [short, long], tiny_tokenizer.pad_token_id, layers, chunk_size=2)
    long_alone = diagonal_fisher(tiny_model, [long], tiny_tokenizer.pad_token_id, layers)
    for path in layers:
        for name, value in padded[path].items():
            torch.testing.assert_close(value, (alone[path][name] + long_alone[path][name]) / 2, rtol=1e-5, atol=1e-12)


MORE_TEXTS = TEXTS + [
    "for k in d:\n    print(k)",
    "y = {'a': 1}",
    "def g():\n    yield 2",
    "s = 'abc'.upper()",
    "try:\n    pass\nexcept Exception:\n    raise",
    "z = lambda t: t * t",
    "assert 1 + 1 == 2",
]


def test_fisher_on_each_prefix_equals_a_per_sample_loop_on_it(tiny_model, tiny_tokenizer, device):
    tiny_model.to(device)
    sequences = encode(tiny_tokenizer, MORE_TEXTS, 24)
    layers = decoder_layer_paths(tiny_model)
    chunks = []
    hook = tiny_model.register_forward_hook(
        lambda _m, args, kwargs, _out: chunks.append(len(kwargs["input_ids"])), with_kwargs=True
    )
    try:
        prefixes = fisher_prefixes(tiny_model, sequences, tiny_tokenizer.pad_token_id, layers, [11, 3, 8], chunk_size=4)
    finally:
        hook.remove()
    assert chunks == [3, 4, 1, 3]  # one pass over 11 of the 12 samples, chunks cut at 3, 8 and 11
    assert sorted(prefixes) == [3, 8, 11]
    for count, fisher in prefixes.items():
        slow = loop_fisher(tiny_model, sequences[:count], tiny_tokenizer.pad_token_id, layers)
        for path in layers:
            assert fisher[path].keys() == slow[path].keys() and fisher[path]
            for name in fisher[path]:
                assert fisher[path][name].device.type == "cpu"
                torch.testing.assert_close(fisher[path][name], slow[path][name].cpu(), rtol=1e-5, atol=1e-12)


def test_fisher_prefixes_need_counts_within_the_samples(tiny_model, tiny_tokenizer):
    sequences = encode(tiny_tokenizer, TEXTS, 24)
    layers = decoder_layer_paths(tiny_model)
    for counts, bad in (([0], "0"), ([2, 6], "6"), ([-1], "-1"), ([2.5], "2.5")):
        with pytest.raises(ValueError, match=f"count {bad} is not between 1 and 5"):
            fisher_prefixes(tiny_model, sequences, tiny_tokenizer.pad_token_id, layers, counts)
    with pytest.raises(ValueError, match="no sample counts"):
        fisher_prefixes(tiny_model, sequences, tiny_tokenizer.pad_token_id, layers, [])
    with pytest.raises(ValueError, match="count 0 is not between 1 and 0"):
        diagonal_fisher(tiny_model, [], tiny_tokenizer.pad_token_id, layers)
    with pytest.raises(ValueError, match="chunk_size"):
        fisher_prefixes(tiny_model, sequences, tiny_tokenizer.pad_token_id, layers, [5], chunk_size=0)
    assert all(p.requires_grad for p in tiny_model.parameters())


def test_fisher_on_a_gpu_equals_the_fisher_on_the_cpu(tiny_model, tiny_tokenizer, cuda):
    sequences = encode(tiny_tokenizer, TEXTS, 24)
    layers = decoder_layer_paths(tiny_model)
    on_cpu = diagonal_fisher(tiny_model, sequences, tiny_tokenizer.pad_token_id, layers, chunk_size=3)
    on_gpu = diagonal_fisher(tiny_model.to(cuda), sequences, tiny_tokenizer.pad_token_id, layers, chunk_size=3)
    for path in layers:
        for name, value in on_cpu[path].items():
            torch.testing.assert_close(on_gpu[path][name], value, rtol=1e-4, atol=1e-10)


def test_layers_own_their_parameters_by_exact_path(tiny_tokenizer):
    from reversibility.models import build_scratch_model

    spec = {
        "architecture": "llama",
        "hidden_size": 8,
        "intermediate_size": 8,
        "num_layers": 12,
        "num_heads": 2,
        "max_length": 16,
    }
    model = build_scratch_model(spec, tiny_tokenizer, seed=0)
    names = list(layer_parameters(model, "model.layers.1"))
    assert names and all(name.startswith("model.layers.1.") for name in names)
    assert len(names) == len(layer_parameters(model, "model.layers.10"))
    assert decoder_layer_paths(model)[:3] == ["model.layers.0", "model.layers.1", "model.layers.2"]


def test_histograms_count_every_value_and_compare(tiny_model, tiny_tokenizer):
    sequences = encode(tiny_tokenizer, TEXTS, 24)
    layers = decoder_layer_paths(tiny_model)
    summary = summarise(diagonal_fisher(tiny_model, sequences, tiny_tokenizer.pad_token_id, layers))
    for path, layer in summary.items():
        assert layer["histogram"].sum() + layer["below_range"] == layer["parameters"]
        assert layer["parameters"] == sum(p.numel() for p in layer_parameters(tiny_model, path).values())
        assert layer["mass"] > 0
    counts = summary[layers[0]]["histogram"]
    assert histogram_distance(counts, counts) == pytest.approx(0.0)
    shifted = np.roll(counts, 20)
    assert 0.5 < histogram_distance(counts, shifted) <= 1.0
    assert histogram_distance(counts, shifted) == pytest.approx(jensenshannon(counts, shifted, base=2), abs=1e-12)
    assert len(BINS) == len(counts) + 1


def test_position_zero_features_are_degenerate_under_causal_attention(tiny_model, tiny_tokenizer):
    """Why we pool: with a BOS token first, every sample's position-0 state is the same (causal
    attention sees nothing else), so CKA on position 0 (the public toolbox's choice) compares
    constants; masked mean pooling gives features that differ between samples."""
    from reversibility.forward_pass import capture_split
    from reversibility.representations import linear_cka

    sequences = encode(tiny_tokenizer, TEXTS, 24)
    captured = capture_split(
        tiny_model, sequences, tiny_tokenizer.pad_token_id, 8, "mean", 24, "cpu", keep_states=len(sequences)
    )
    last_layer = captured["states"][-2]  # [n, T, hidden] of the last decoder layer
    position_zero = last_layer[:, 0, :]
    assert np.ptp(position_zero, axis=0).max() < 1e-5
    assert np.isnan(linear_cka(position_zero, position_zero + 1e-9))
    pooled = captured["features"][-2]
    assert np.ptp(pooled, axis=0).max() > 1e-2
    assert linear_cka(pooled, pooled) == pytest.approx(1.0)
