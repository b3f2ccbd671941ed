"""Stage `base_model`: the model every cell of a (model, dataset) pair starts from."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Mapping

from .. import data, sharding
from ..models import (
    add_lora,
    build_scratch_model,
    gradient_checkpointing,
    load_pretrained,
    load_pretrained_local,
    merge_adapter,
    n_parameters,
    pick_device,
)
from ..precision import WEIGHTS, Precision
from ..provenance import Recorder
from ..runtime import configure_torch
from ..seeds import derive_seed
from ..tokenization import train_bpe
from ..training import OptimSettings
from ..unlearning import finetune
from .training_jobs import loading_device, save_trained, tokenized

log = logging.getLogger(__name__)
PathLike = str | os.PathLike


def train_base(
    data_dir: PathLike,
    out_dir: PathLike,
    model_name: str,
    spec: Mapping,
    seed: int,
    threads: int,
    replicate: str = "s0",
    pretrained_dir: PathLike | None = None,
    checkpointing: bool = False,
    generation_tokens: int = 0,
) -> None:
    """The base model: trained on forget + retain + retain_eval until it knows its forget set.

    `scratch`: a BPE trained on the background split, then a fresh model. Pretrained sources
    (`hub`, `local`, `gguf` via `pretrained_dir`): the pretrained model fine-tuned on forget +
    retain (the usual protocol when the forget data was not in its pretraining;
    `base_training.epochs: 0` keeps it as it is), through a LoRA adapter merged back in float32
    when the spec's `lora.enabled` is set. The base checkpoint is always full weights.
    `checkpointing`: gradient checkpointing (memory only; the weights are the same). A model whose
    positions cannot hold `max_length` tokens, or a prompt and `generation_tokens` (the longest
    benchmark budget), is refused before it trains. `replicate`: the base's folder, `s<seed>` or
    `shared` by every seed (`base_per_seed`), recorded in its provenance with `seed`, the seed of
    that replicate. Sharded (sharding.py), every process loads the
    model on the host and trains its shard; the first writes the checkpoint.
    """
    run_seed = derive_seed(seed, "base", model_name, Path(data_dir).name)
    configure_torch(threads, run_seed)
    recorder = Recorder(
        params={"spec": dict(spec), "seed": seed, "replicate": replicate},
        inputs={"manifest": Path(data_dir) / "manifest.json"},
        seed=run_seed,
    )
    group = sharding.current()
    device = pick_device()
    precision = Precision.of(spec["dtype"], device)
    source = spec["source"]
    adapted = source != "scratch" and spec["lora"]["enabled"]
    # Weights that train are float32; under an adapter the base is frozen, in the compute dtype.
    dtype = precision.compute if adapted else WEIGHTS
    if source == "scratch":
        # One tokenizer for every process: the first trains it.
        tokenizer = group.from_main(
            train_bpe((r["text"] for r in data.load_split(data_dir, "background")), spec["vocab_size"])
            if group.main
            else None
        )
        model = build_scratch_model(spec, tokenizer, run_seed).to(loading_device(group, device))
    elif source == "hub":
        model, tokenizer = load_pretrained(spec, loading_device(group, device), dtype)
    else:
        model, tokenizer = load_pretrained_local(
            pretrained_dir or spec["path"], loading_device(group, device), dtype, spec["trust_remote_code"]
        )
    log.info("model %s: %d parameters, vocabulary %d", model_name, n_parameters(model), len(tokenizer))
    check_positions(model, model_name, spec["max_length"], generation_tokens)

    training = spec["base_training"]
    members = [record for split in ("forget", "retain", "retain_eval") for record in data.load_split(data_dir, split)]
    sequences = tokenized(tokenizer, members, spec["max_length"])
    steps = training["epochs"] * -(-len(sequences) // training["batch_size"])
    if steps:
        trained = sharding.shard(add_lora(model, spec["lora"]) if adapted else model, group)
        with gradient_checkpointing(trained, checkpointing):
            record = finetune(
                trained,
                sequences,
                steps,
                training["batch_size"],
                OptimSettings.from_config(training),
                tokenizer.pad_token_id,
                run_seed,
                desc="base training",
                precision=precision,
            )
        if record.collapsed:
            raise RuntimeError(
                f"model {model_name!r}: base training diverged ({record.collapse_reason}); "
                f"lower models.{model_name}.base_training.learning_rate"
            )
        model = merge_adapter(trained) if adapted else trained
        recorder.extra["training"] = {"steps": steps, "final_loss": record.steps[-1]["loss"]}
    recorder.extra["precision"] = precision.record()
    save_trained(model, tokenizer, out_dir, recorder, group)


def check_positions(model, model_name: str, max_length: int, generation_tokens: int) -> None:
    """Refuse a model whose positions cannot hold a training sequence or a benchmark answer."""
    positions = getattr(model.config, "max_position_embeddings", None)
    needed = max(max_length, generation_tokens + 2)
    if positions is not None and positions < needed:
        raise ValueError(
            f"models.{model_name}: the model has {positions} positions, but max_length = {max_length} "
            f"and a benchmark budget of {generation_tokens} new tokens after a prompt need {needed}"
        )
