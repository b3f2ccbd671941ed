import h5py
import numpy as np
import pytest
import torch

from reversibility.activations import Capture, write_capture
from reversibility.forward_pass import capture_split, layer_modules, pool, pooling_weights, token_statistics
from reversibility.tokenization import IGNORE_INDEX, encode

TEXTS = ["def add(a, b):\n    return a + b", "class Point:\n    pass", "x = [i for i in range(3)]"]


def test_layers_are_embeddings_every_decoder_layer_and_the_final_norm(tiny_model):
    names = [name for name, _ in layer_modules(tiny_model)]
    assert names == ["model.embed_tokens", "model.layers.0", "model.layers.1", "model.norm"]


def test_mean_pooling_ignores_pads_and_last_takes_the_last_real_token():
    hidden = torch.arange(2 * 3 * 2, dtype=torch.float32).reshape(2, 3, 2)
    mask = torch.tensor([[1, 1, 0], [1, 1, 1]], dtype=torch.bool)
    torch.testing.assert_close(pool(hidden, pooling_weights(mask, "mean")), torch.tensor([[1.0, 2.0], [8.0, 9.0]]))
    assert pool(hidden, pooling_weights(mask, "last")).tolist() == [[2.0, 3.0], [10.0, 11.0]]
    with pytest.raises(ValueError, match="'max'"):
        pooling_weights(mask, "max")


def test_adding_pads_to_a_batch_changes_no_captured_value(tiny_model, tiny_tokenizer, device):
    tiny_model.to(device)
    sequences = encode(tiny_tokenizer, TEXTS, 32)
    alone = [capture_split(tiny_model, [s], tiny_tokenizer.pad_token_id, 1, "mean", 32, device) for s in sequences]
    together = capture_split(tiny_model, sequences, tiny_tokenizer.pad_token_id, 8, "mean", 32, device)
    for row, single in enumerate(alone):
        for layer, feats in enumerate(single["features"]):
            np.testing.assert_allclose(together["features"][layer][row], feats[0], atol=1e-5)
        for name in ("logprob", "correct", "mask", "mu", "sigma"):
            # Batched attention over a padded batch differs from a single sequence by float noise.
            np.testing.assert_allclose(together["stats"][name][row], single["stats"][name][0], atol=1e-4)


def test_token_states_are_kept_for_the_first_samples_only(tiny_model, tiny_tokenizer):
    sequences = encode(tiny_tokenizer, TEXTS, 32)
    captured = capture_split(tiny_model, sequences, tiny_tokenizer.pad_token_id, 2, "mean", 32, "cpu", keep_states=3)
    assert len(captured["states"]) == 4 and captured["states"][1].shape == (3, 32, 16)
    # Mean pooling is the masked mean of the kept states.
    mask = np.array([[1.0] * len(s) + [0.0] * (32 - len(s)) for s in sequences[:3]])
    pooled = (captured["states"][1] * mask[:, :, None]).sum(1) / mask.sum(1, keepdims=True)
    np.testing.assert_allclose(pooled, captured["features"][1][:3], atol=1e-5)


def test_capture_on_a_gpu_equals_the_capture_on_the_cpu(tiny_model, tiny_tokenizer, cuda):
    sequences = encode(tiny_tokenizer, TEXTS, 32)
    on_cpu = capture_split(tiny_model, sequences, tiny_tokenizer.pad_token_id, 2, "last", 32, "cpu", keep_states=2)
    on_gpu = capture_split(
        tiny_model.to(cuda), sequences, tiny_tokenizer.pad_token_id, 2, "last", 32, cuda, keep_states=2
    )
    for kind in ("features", "states"):
        for cpu_layer, gpu_layer in zip(on_cpu[kind], on_gpu[kind], strict=True):
            np.testing.assert_allclose(gpu_layer, cpu_layer, atol=1e-5)
    for name, value in on_cpu["stats"].items():
        np.testing.assert_allclose(on_gpu["stats"][name], value, atol=1e-4)


def test_token_statistics_on_hand_built_logits():
    logits = torch.log(torch.tensor([[[0.7, 0.2, 0.1], [0.1, 0.1, 0.8], [1 / 3, 1 / 3, 1 / 3]]]))
    labels = torch.tensor([[0, 1, IGNORE_INDEX]])  # one real target: token 1 after position 0
    stats = token_statistics(logits, labels)
    assert stats["mask"].tolist() == [[True, False]]
    assert stats["logprob"][0, 0].item() == pytest.approx(np.log(0.2), rel=1e-5)
    assert stats["correct"].tolist() == [[False, False]]
    p = np.array([0.7, 0.2, 0.1])
    mu = (p * np.log(p)).sum()
    assert stats["mu"][0, 0].item() == pytest.approx(mu, rel=1e-5)
    assert stats["sigma"][0, 0].item() == pytest.approx(np.sqrt((p * (np.log(p) - mu) ** 2).sum()), rel=1e-4)


def test_the_spread_of_a_flat_prediction_over_an_llm_vocabulary_keeps_its_digits():
    """Nearly uniform over 151,936 tokens (Qwen2.5's vocabulary): the log-probabilities' spread
    is 1e-3 around a mean of -11.9; E[l^2] - mu^2 in float32 would lose it to rounding."""
    generator = torch.Generator().manual_seed(0)
    logits = 1e-3 * torch.randn(1, 2, 151_936, generator=generator)
    labels = torch.tensor([[0, 7]])
    sigma = token_statistics(logits, labels)["sigma"][0, 0].item()
    logprobs = torch.log_softmax(logits[0, 0].double(), dim=-1)
    p = logprobs.exp()
    expected = (p * (logprobs - (p * logprobs).sum()).square()).sum().sqrt().item()
    assert sigma == pytest.approx(expected, rel=1e-3)


def test_capture_file_round_trip_and_incomplete_files_are_refused(tmp_path):
    rng = np.random.default_rng(0)
    split = {
        "ids": ["a#0", "b#1"],
        "features": [rng.normal(size=(2, 4)) for _ in range(3)],
        "stats": {"logprob": rng.normal(size=(2, 5)).astype(np.float32)},
    }
    path = tmp_path / "c.h5"
    write_capture(path, ["emb", "l0", "norm"], {"forget": split}, {"pooling": "mean", "provenance": {"seed": 1}})
    with Capture(path) as cap:
        assert cap.layers == ["emb", "l0", "norm"] and cap.ids("forget") == ["a#0", "b#1"]
        np.testing.assert_allclose(cap.features("forget", 2), split["features"][2], rtol=1e-6)
        assert cap.attr("provenance") == {"seed": 1}
    with h5py.File(path, "a") as h5:
        del h5.attrs["complete"]
    with pytest.raises(ValueError, match="incomplete capture"):
        Capture(path)
    path.write_bytes(b"not hdf5")
    with pytest.raises(ValueError, match="unreadable HDF5"):
        Capture(path)


def test_light_jobs_start_without_torch():
    """Metrics and diagnostics jobs (two per cell) read captures only: importing torch would add
    seconds to each."""
    import subprocess
    import sys

    probe = (
        "import sys; from reversibility.stages import checkpoint_metrics, diagnostics, prepare_benchmark, "
        "prepare_data; print('torch' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


# ----------------------------------------------------------------------------- logit lens


def _lens(model, sequences, pad_id, batch_size=8, max_length=32, **kwargs):
    return capture_split(model, sequences, pad_id, batch_size, "mean", max_length, "cpu", logit_lens=True, **kwargs)


def test_the_last_layer_of_the_logit_lens_is_the_models_own_token_statistics(tiny_model, tiny_tokenizer):
    """Also when the readout reduces the model's logits itself (no token statistics asked for)."""
    sequences = encode(tiny_tokenizer, TEXTS, 32)
    for with_stats in (True, False):
        lens = _lens(tiny_model, sequences, tiny_tokenizer.pad_token_id, with_stats=with_stats)["lens"]
        stats = _lens(tiny_model, sequences, tiny_tokenizer.pad_token_id)["stats"]
        assert lens["correct"].shape == (3, 4)
        np.testing.assert_array_equal(lens["targets"][:, -1], stats["mask"].sum(1))
        np.testing.assert_array_equal(lens["correct"][:, -1], stats["correct"].sum(1))
        np.testing.assert_allclose(lens["logprob"][:, -1], stats["logprob"].sum(1), rtol=1e-5)


def test_the_readout_head_gives_the_models_own_logits_with_a_soft_cap_and_tied_embeddings():
    """The head applied to the final norm's output is the model's output: Llama with tied
    embeddings, and Gemma 2, whose logits are soft-capped (cap x tanh(l / cap))."""
    from transformers import Gemma2Config, Gemma2ForCausalLM, LlamaConfig, LlamaForCausalLM

    from reversibility.forward_pass import readout_head

    shape = dict(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2)
    torch.manual_seed(0)
    models = [
        LlamaForCausalLM(LlamaConfig(**shape, num_key_value_heads=2, tie_word_embeddings=True)),
        Gemma2ForCausalLM(Gemma2Config(**shape, num_key_value_heads=2, head_dim=8, final_logit_softcapping=0.5)),
    ]
    ids = torch.randint(0, 64, (2, 7))
    for model in models:
        model.eval()
        out = model(input_ids=ids, output_hidden_states=True)
        normed = {}
        handle = model.get_decoder().norm.register_forward_hook(lambda m, i, o: normed.update(out=o))
        model(input_ids=ids)
        handle.remove()
        assert out.logits.abs().max() <= 0.5 or not isinstance(model, Gemma2ForCausalLM)
        torch.testing.assert_close(readout_head(model)(normed["out"]), out.logits, atol=1e-5, rtol=1e-5)


def _by_hand(model, sequences, pad_id, layer):
    """Per sample: argmax hits and summed log-probabilities of the final norm and the output head
    applied to `output_hidden_states`' layer `layer`, one sequence at a time, in float64."""
    from reversibility.tokenization import batches

    decoder, head = model.get_decoder(), model.get_output_embeddings()
    correct, logprob = [], []
    for batch in batches(sequences, 1, pad_id):
        with torch.no_grad():
            hidden = model(input_ids=batch.input_ids, output_hidden_states=True).hidden_states[layer]
            logits = head(decoder.norm(hidden))[0, :-1].double()
        targets = batch.input_ids[0, 1:]
        logprobs = torch.log_softmax(logits, -1)
        correct.append(int((logprobs.argmax(-1) == targets).sum()))
        logprob.append(float(logprobs.gather(-1, targets[:, None]).sum()))
    return np.array(correct), np.array(logprob)


def test_an_intermediate_layer_read_by_hand_through_the_norm_and_the_head(tiny_model, tiny_tokenizer):
    sequences = encode(tiny_tokenizer, TEXTS, 32)
    lens = _lens(tiny_model, sequences, tiny_tokenizer.pad_token_id)["lens"]
    for layer in (0, 1):  # the embeddings' output, the first decoder layer's output
        correct, logprob = _by_hand(tiny_model, sequences, tiny_tokenizer.pad_token_id, layer)
        np.testing.assert_array_equal(lens["correct"][:, layer], correct)
        np.testing.assert_allclose(lens["logprob"][:, layer], logprob, rtol=1e-5)
        np.testing.assert_array_equal(lens["targets"][:, layer], [len(s) - 1 for s in sequences])


def test_the_last_decoder_layer_read_by_hand_is_the_models_output(tiny_model, tiny_tokenizer):
    """Its readout is copied from the final norm's: the same numbers as reading it through the
    norm and the head."""
    sequences = encode(tiny_tokenizer, TEXTS, 32)
    lens = _lens(tiny_model, sequences, tiny_tokenizer.pad_token_id)["lens"]
    decoder, head = tiny_model.get_decoder(), tiny_model.get_output_embeddings()
    outputs = {}
    handle = decoder.layers[-1].register_forward_hook(
        lambda m, i, o: outputs.update(out=o[0] if isinstance(o, tuple) else o)
    )
    for row, ids in enumerate(sequences):
        with torch.no_grad():
            tiny_model(input_ids=torch.tensor([ids]))
            logprobs = torch.log_softmax(head(decoder.norm(outputs["out"]))[0, :-1].double(), -1)
        targets = torch.tensor(ids[1:])
        assert lens["correct"][row, -2] == int((logprobs.argmax(-1) == targets).sum())
        np.testing.assert_allclose(
            lens["logprob"][row, -2], float(logprobs.gather(-1, targets[:, None]).sum()), rtol=1e-5
        )
    handle.remove()


def test_pads_change_no_logit_lens_value(tiny_model, tiny_tokenizer):
    sequences = encode(tiny_tokenizer, TEXTS, 32)
    pad_id = tiny_tokenizer.pad_token_id
    alone = [_lens(tiny_model, [s], pad_id, batch_size=1)["lens"] for s in sequences]
    together = _lens(tiny_model, sequences, pad_id, batch_size=8)["lens"]
    for row, single in enumerate(alone):
        np.testing.assert_array_equal(together["targets"][row], single["targets"][0])
        np.testing.assert_array_equal(together["correct"][row], single["correct"][0])
        np.testing.assert_allclose(together["logprob"][row], single["logprob"][0], rtol=1e-4)


def test_the_logit_lens_of_a_long_sample_under_bf16_autocast_stays_near_float32():
    """A model of an LLM's proportions in miniature (vocabulary larger than the chunk of positions
    read together, several hundred tokens per sample), under CPU bf16 autocast as a GPU capture
    runs: per layer, the readout agrees with the float64 readout of the float32 hidden states."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=2048, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=512, tie_word_embeddings=False,
    )  # fmt: skip
    model = LlamaForCausalLM(config).eval()
    generator = torch.Generator().manual_seed(1)
    sequences = [torch.randint(3, 2048, (k,), generator=generator).tolist() for k in (400, 300)]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        lens = capture_split(model, sequences, 0, 2, "mean", 400, "cpu", logit_lens=True)["lens"]
    np.testing.assert_array_equal(lens["targets"], [[399] * 4, [299] * 4])
    for layer in range(3):
        correct, logprob = _by_hand(model, sequences, 0, layer)
        targets = lens["targets"][:, layer]
        np.testing.assert_allclose(lens["logprob"][:, layer] / targets, logprob / targets, rtol=2e-2)
        assert np.all(np.abs(lens["correct"][:, layer] - correct) <= 0.02 * targets + 1)


def test_the_logit_lens_round_trips_and_a_capture_without_it_is_refused_by_name(tmp_path):
    lens = {"correct": np.array([[1.0, 2.0]]), "logprob": np.array([[-3.5, -1.25]]), "targets": np.array([[4.0, 4.0]])}
    split = {"ids": ["a#0"], "features": [np.zeros((1, 2))] * 2, "stats": {}}
    read = {**split, "lens": lens}
    write_capture(tmp_path / "lens.h5", ["emb", "norm"], {"forget": read, "retain": split, "holdout": read}, {})
    write_capture(tmp_path / "none.h5", ["emb", "norm"], {"forget": split}, {})
    with Capture(tmp_path / "lens.h5") as cap:
        assert cap.has_logit_lens()
        for name, value in cap.logit_lens("forget").items():
            np.testing.assert_array_equal(value, lens[name])
    with Capture(tmp_path / "none.h5") as cap:
        assert not cap.has_logit_lens()
        with pytest.raises(ValueError, match="no logit lens in split 'forget'"):
            cap.logit_lens("forget")
