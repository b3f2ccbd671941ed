"""Stage `capture_base`, and the relearn job's captures: one forward pass per split -> pooled
layers and token statistics in HDF5 (activations.py).

`capture_model` captures a model already in memory (the relearn stage captures the model it
starts from and the one it ends with); `capture_base` loads a checkpoint and captures it.
"""

from __future__ import annotations

import logging
import os
import zlib
from pathlib import Path
from typing import Mapping

from .. import cell_data, data
from ..activations import LENS_SPLITS, write_capture
from ..benchmarks import problems_of
from ..fisher import BINS, decoder_layer_paths, fisher_prefixes, summarise
from ..forward_pass import capture_split, layer_modules
from ..generation import greedy_generate
from ..io import read_json
from ..models import load_checkpoint, pick_device
from ..precision import Precision
from ..provenance import CHECKPOINT_RECORD, Recorder
from ..runtime import configure_torch
from ..tokenization import encode

log = logging.getLogger(__name__)
PathLike = str | os.PathLike


def capture_model(
    model,
    tokenizer,
    checkpoint_dir: PathLike,
    data_dir: PathLike,
    out_path: PathLike,
    *,
    capture_config: Mapping,
    max_length: int,
    n_requests: int | None = None,
    benchmarks: Mapping[str, Mapping] | None = None,
    benchmark_dirs: Mapping[str, PathLike] | None = None,
) -> None:
    """Capture the model saved at `checkpoint_dir` (already loaded) on every evaluation split,
    its diagonal Fisher on prefixes of the forget pool (a cell's model: the first request's and
    requests 1..`n_requests`, capped at `capture.fisher_samples`; the base model, `n_requests`
    None: every request boundary, cell_data.fisher_counts), and its greedy answers to each
    benchmark's problems (prepared in `benchmark_dirs`)."""
    log.info("capturing %s", checkpoint_dir)
    benchmarks, benchmark_dirs = dict(benchmarks or {}), dict(benchmark_dirs or {})
    manifest = data.load_manifest(data_dir)
    recorder = Recorder(
        params={
            "capture": dict(capture_config),
            "max_length": max_length,
            "n_requests": n_requests,
            "benchmarks": benchmarks,
        },
        inputs={
            "checkpoint": checkpoint_dir,
            "manifest": Path(data_dir) / "manifest.json",
            **{f"benchmark {name}": Path(folder) / "problems.jsonl" for name, folder in benchmark_dirs.items()},
        },
    )
    recorder.extra["split_sha256"] = {split: info["sha256"] for split, info in manifest["splits"].items()}
    device = next(model.parameters()).device
    splits = evaluation_splits(data_dir, capture_config)
    captured = {}
    for split, records in splits.items():
        sequences = encode(tokenizer, [r["text"] for r in records], max_length)
        captured[split] = {
            "ids": [r["id"] for r in records],
            **capture_split(
                model,
                sequences,
                tokenizer.pad_token_id,
                capture_config["batch_size"],
                capture_config["pooling"],
                max_length,
                device,
                keep_states=capture_config["token_states"],
                logit_lens=capture_config["logit_lens"] and split in LENS_SPLITS,
            ),
        }
    for split, records in splits.items():
        captured[split]["zlib"] = [
            zlib_length(tokenizer, ids) for ids in encode(tokenizer, [r["text"] for r in records], max_length)
        ]
    answers = {
        name: benchmark_answers(model, tokenizer, spec, benchmark_dirs.get(name), data_dir)
        for name, spec in benchmarks.items()
    }
    fisher = None
    counts = cell_data.fisher_counts(capture_config["fisher_samples"], manifest["requests"]["size"], n_requests)
    if counts:
        probe = encode(tokenizer, [r["text"] for r in splits["forget"][: counts[-1]]], max_length)
        values = fisher_prefixes(
            model,
            probe,
            tokenizer.pad_token_id,
            decoder_layer_paths(model),
            counts,
            chunk_size=capture_config["fisher_chunk"],
        )
        fisher = {
            count: {path: {**summary, "samples": count} for path, summary in summarise(prefix).items()}
            for count, prefix in values.items()
        }
    checkpoint = read_json(Path(checkpoint_dir) / CHECKPOINT_RECORD)
    write_capture(
        out_path,
        [layer for layer, _ in layer_modules(model)],
        captured,
        {
            "pooling": capture_config["pooling"],
            "max_length": max_length,
            "collapsed": bool(checkpoint.get("collapsed", False)),
            "provenance": recorder.record(),
        },
        dtype=capture_config["dtype"],
        fisher=fisher,
        fisher_bins=BINS,
        benchmarks=answers,
    )


def zlib_length(tokenizer, ids: list[int]) -> int:
    """zlib-compressed length in bytes of the text the model actually saw: its BOS dropped when
    the tokenizer adds one (Qwen2.5's adds none, so the first id is text)."""
    bos = tokenizer.bos_token_id
    text_ids = ids[1:] if bos is not None and ids[:1] == [bos] else ids
    return len(zlib.compress(tokenizer.decode(text_ids).encode("utf-8")))


def benchmark_answers(model, tokenizer, spec: Mapping, benchmark_dir: PathLike | None, data_dir: PathLike) -> dict:
    """Greedy solutions to a benchmark's problems, beside their reference answers."""
    problems = problems_of(spec, benchmark_dir, data_dir)
    prompts = [spec["prompt"].format(question=p["question"]) for p in problems]
    generations = greedy_generate(
        model, tokenizer, prompts, spec["max_new_tokens"], spec["batch_size"], stop=spec["stop"]
    )
    return {
        "ids": [p["id"] for p in problems],
        "answers": [p["answer"] for p in problems],
        "generations": generations,
        "answer_style": spec["answer_style"],
    }


def capture_base(
    checkpoint_dir: PathLike,
    data_dir: PathLike,
    out_path: PathLike,
    *,
    capture_config: Mapping,
    max_length: int,
    dtype: str,
    threads: int,
    benchmarks: Mapping[str, Mapping] | None = None,
    benchmark_dirs: Mapping[str, PathLike] | None = None,
) -> None:
    """Capture a checkpoint with its weights in the spec's compute dtype (precision.py)."""
    configure_torch(threads, 0)
    device = pick_device()
    model, tokenizer = load_checkpoint(checkpoint_dir, device, Precision.of(dtype, device).compute)
    capture_model(
        model,
        tokenizer,
        checkpoint_dir,
        data_dir,
        out_path,
        capture_config=capture_config,
        max_length=max_length,
        benchmarks=benchmarks,
        benchmark_dirs=benchmark_dirs,
    )


def evaluation_splits(data_dir: PathLike, capture_config: Mapping) -> dict[str, list[dict]]:
    """The whole forget pool, the retain probes (the first `retain_samples` of retain_eval, which
    no stage after the base model trains on), and the holdout."""
    return {
        "forget": data.load_split(data_dir, "forget"),
        "retain": cell_data.retain_probe(data_dir, capture_config["retain_samples"]),
        "holdout": data.load_split(data_dir, "holdout"),
    }
