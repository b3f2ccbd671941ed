"""Models: build a from-scratch decoder, save and load checkpoints (safetensors only).

A checkpoint is a directory holding the weights (`model.safetensors`), the transformers config,
the tokenizer and `provenance.json` (with the weights' sha256, so consumers need not rehash).
Loading never unpickles: `use_safetensors=True`, and `trust_remote_code` stays off unless the
model spec turns it on.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

import torch

from .io import atomic_path, sha256_file, write_json
from .provenance import CHECKPOINT_RECORD

ARCHITECTURES = {"llama": ("LlamaConfig", "LlamaForCausalLM"),
                 "qwen2": ("Qwen2Config", "Qwen2ForCausalLM")}


def pick_device(requested: str = "auto") -> torch.device:
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
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
        max_position_embeddings=spec["max_length"],
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


def save_checkpoint(model, tokenizer, path: str | os.PathLike, provenance: Mapping[str, Any]) -> None:
    """Write weights, config, tokenizer and provenance into `path`, atomically."""
    with atomic_path(path, directory=True) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        weights = sorted(Path(tmp).glob("*.safetensors"))
        record = dict(provenance)
        record["sha256"] = _combined(sha256_file(w) for w in weights)
        write_json(Path(tmp) / CHECKPOINT_RECORD, record)


def _combined(digests) -> str:
    import hashlib

    return hashlib.sha256("".join(digests).encode()).hexdigest()


def compute_dtype(requested: str, device: torch.device) -> torch.dtype:
    """float32 on CPU whatever is asked (bf16 has no fast CPU kernels); the spec's dtype on GPU."""
    if device.type == "cpu":
        return torch.float32
    return {"auto": torch.bfloat16, "bfloat16": torch.bfloat16, "float16": torch.float16,
            "float32": torch.float32}[requested]


def load_checkpoint(path: str | os.PathLike, device: torch.device | str = "cpu", dtype: str = "auto",
                    trust_remote_code: bool = False):
    """Model (in eval mode) and tokenizer from a checkpoint directory, safetensors only."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path, device = Path(path), torch.device(device)
    if not any(path.glob("*.safetensors")):
        raise FileNotFoundError(f"{path}: no safetensors weights; rerun the rule that writes it")
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, use_safetensors=True, dtype=compute_dtype(dtype, device),
                                                 trust_remote_code=trust_remote_code)
    model.to(device).eval()
    return model, tokenizer


def load_pretrained(spec: Mapping[str, Any], device: torch.device):
    """A `hub` model spec: weights and tokenizer from the Hugging Face hub (or its local cache).

    Remote code runs only when the spec sets `trust_remote_code: true`; weights load from
    safetensors only.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from .tokenization import ensure_special_tokens

    options = {"revision": spec["revision"], "trust_remote_code": spec["trust_remote_code"]}
    tokenizer = AutoTokenizer.from_pretrained(spec["hub_id"], **options)
    ensure_special_tokens(tokenizer)
    model = AutoModelForCausalLM.from_pretrained(spec["hub_id"], use_safetensors=True,
                                                 dtype=compute_dtype(spec["dtype"], device),
                                                 attn_implementation=spec["attn_implementation"], **options)
    model.to(device).eval()
    return model, tokenizer
