"""Mixed precision: weights that train stay float32 while the arithmetic runs in bfloat16.

CPU autocast supports bfloat16, so the GPU's training path runs here, only slower.
"""

import pytest
import torch

from reversibility.methods import get_method
from reversibility.models import build_scratch_model, load_checkpoint, save_checkpoint, trainable_model
from reversibility.precision import Precision
from reversibility.tokenization import encode
from reversibility.training import OptimSettings, train
from reversibility.unlearning import UnlearnPlan, unlearn_requests

SPEC = {
    "architecture": "llama",
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_layers": 2,
    "num_heads": 4,
    "max_length": 48,
}
NO_LORA = {"enabled": False}
BF16 = Precision(torch.bfloat16, "cpu")
FLOAT32 = Precision(torch.float32, "cpu")


@pytest.fixture
def base_checkpoint(tmp_path, tiny_tokenizer):
    """A small model whose weights have the usual LLM scale (initialised with std 0.02)."""
    model = build_scratch_model(SPEC, tiny_tokenizer, seed=0)
    path = tmp_path / "base"
    save_checkpoint(model, tiny_tokenizer, path, {})
    return path


def forget_requests(tokenizer):
    texts = [f"def function_{i}(value):\n    return value * {i} + {i * i}" for i in range(8)]
    return [encode(tokenizer, texts, SPEC["max_length"])]


def unlearned_weights(path, tokenizer, precision, learning_rate=1e-5, steps=5):
    """The weights before and after `steps` GA steps at `learning_rate`, trained as a job does."""
    model, _ = trainable_model(path, "cpu", precision, NO_LORA)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    plan = UnlearnPlan(
        steps_per_request=steps, batch_size=8, retain_batch_size=8, optim=OptimSettings(learning_rate=learning_rate)
    )
    record = unlearn_requests(
        model,
        None,
        get_method("ga"),
        {},
        forget_requests(tokenizer),
        [],
        plan,
        tokenizer.pad_token_id,
        seed=0,
        precision=precision,
    )
    assert not record.collapsed
    return before, dict(model.named_parameters())


def share_changed(before, after) -> float:
    changed = sum(int((after[name].detach().float() != value.float()).sum()) for name, value in before.items())
    return changed / sum(value.numel() for value in before.values())


def test_the_compute_dtype_is_the_specs_on_a_gpu_and_float32_on_a_cpu():
    assert Precision.of("auto", "cuda").compute == torch.bfloat16
    assert Precision.of("float32", "cuda").compute == torch.float32 and not Precision.of("float32", "cuda").mixed
    assert Precision.of("float16", "cuda:0").scales_loss
    assert Precision.of("bfloat16", "cpu") == FLOAT32


def test_a_1e_5_step_under_bf16_autocast_changes_as_many_weights_as_float32(base_checkpoint, tiny_tokenizer):
    float32_before, float32_after = unlearned_weights(base_checkpoint, tiny_tokenizer, FLOAT32)
    mixed_before, mixed_after = unlearned_weights(base_checkpoint, tiny_tokenizer, BF16)
    assert {p.dtype for p in mixed_after.values()} == {torch.float32}
    float32_share, mixed_share = share_changed(float32_before, float32_after), share_changed(mixed_before, mixed_after)
    assert float32_share > 0.95
    assert mixed_share >= 0.97 * float32_share, (mixed_share, float32_share)


def test_pure_bf16_weights_would_lose_most_of_those_updates(base_checkpoint, tiny_tokenizer):
    """What the float32 weights prevent: the same AdamW steps on bfloat16 weights round most of
    the 1e-5 updates away (so the test above fails on that path)."""
    model, _ = load_checkpoint(base_checkpoint, "cpu", torch.bfloat16)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5, weight_decay=0.0)
    from reversibility.methods import gradient_ascent
    from reversibility.tokenization import collate

    batch = collate(forget_requests(tiny_tokenizer)[0], tiny_tokenizer.pad_token_id)
    model.train()
    for _ in range(5):
        optimizer.zero_grad()
        gradient_ascent(model, batch, None, None, {}).backward()
        optimizer.step()
    assert share_changed(before, dict(model.named_parameters())) < 0.5


def test_the_loop_refuses_weights_that_train_in_bf16(base_checkpoint):
    model, _ = load_checkpoint(base_checkpoint, "cpu", torch.bfloat16)
    with pytest.raises(ValueError, match="must be float32"):
        train(model, lambda m, b: torch.zeros(()), iter([]), 1, OptimSettings(learning_rate=1e-5))


def test_float16_autocast_trains_with_loss_scaling(base_checkpoint, tiny_tokenizer):
    before, after = unlearned_weights(base_checkpoint, tiny_tokenizer, Precision(torch.float16, "cpu"))
    assert share_changed(before, after) > 0.9


def test_gradient_checkpointing_gives_the_same_weights_and_leaves_the_config(base_checkpoint, tiny_tokenizer):
    from reversibility.models import gradient_checkpointing

    runs = []
    for enabled in (False, True):
        model, _ = trainable_model(base_checkpoint, "cpu", FLOAT32, NO_LORA)
        plan = UnlearnPlan(
            steps_per_request=3, batch_size=8, retain_batch_size=8, optim=OptimSettings(learning_rate=1e-3)
        )
        with gradient_checkpointing(model, enabled):
            assert model.is_activation_checkpointing == enabled
            unlearn_requests(
                model,
                None,
                get_method("ga"),
                {},
                forget_requests(tiny_tokenizer),
                [],
                plan,
                tiny_tokenizer.pad_token_id,
                seed=0,
            )
        assert not model.is_activation_checkpointing and model.config.use_cache
        runs.append(dict(model.named_parameters()))
    for name, value in runs[0].items():
        torch.testing.assert_close(runs[1][name], value, rtol=1e-6, atol=1e-8)


def test_an_adapter_is_merged_into_float32_base_weights(base_checkpoint, tiny_tokenizer, tmp_path):
    """A LoRA update of about 1e-5 (a 1e-5 learning rate's) survives the merge; merged into
    bfloat16 base weights it would round to nothing."""
    lora = {"enabled": True, "rank": 4, "alpha": 8, "dropout": 0.0, "target_modules": ["q_proj", "v_proj"]}
    model, _ = trainable_model(base_checkpoint, "cpu", BF16, lora)
    assert {p.dtype for p in model.parameters() if p.requires_grad} == {torch.float32}
    assert {p.dtype for p in model.parameters() if not p.requires_grad} == {torch.bfloat16}
    layer = model.base_model.model.model.layers[0].self_attn.q_proj
    with torch.no_grad():
        layer.lora_B["default"].weight.fill_(1e-5)
    delta = (layer.lora_B["default"].weight @ layer.lora_A["default"].weight * layer.scaling["default"]).detach()
    save_checkpoint(model, tiny_tokenizer, tmp_path / "adapter", {}, base_checkpoint=base_checkpoint)

    base, _ = load_checkpoint(base_checkpoint, "cpu")
    merged, _ = load_checkpoint(tmp_path / "adapter", "cpu")
    original = base.model.layers[0].self_attn.q_proj.weight.detach()
    update = merged.model.layers[0].self_attn.q_proj.weight.detach() - original
    torch.testing.assert_close(update, delta, rtol=1e-3, atol=1e-8)  # float32 rounding of w + delta
    in_bf16 = (original.bfloat16() + delta.bfloat16()).float() - original.bfloat16().float()
    assert (in_bf16 != 0).float().mean() < 0.2
