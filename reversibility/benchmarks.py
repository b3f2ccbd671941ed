"""Evaluation benchmarks (GSM8K, MATH-500, ...): problems with reference final answers.

A benchmark is its own config section, separate from the forget domains, read through the same
loaders as a dataset (`hub`, or local `json`/`parquet` files through `datasets.load_dataset`), or
`held_out`: the held-out problems (`math_eval` split) of an experiment's own dataset. Its
problems are prepared once (`results/benchmarks/<name>/problems.jsonl`, each with the reference
final answer read from the answer column in the benchmark's answer style) and solved by greedy
generation in every capture.
"""

from __future__ import annotations

import itertools
import os
from pathlib import Path
from typing import Mapping

from .answers import extract_boxed, extract_gsm8k
from .io import read_json, read_jsonl, sha256_text, write_json, write_jsonl
from .sources import DataError, load_rows

PROBLEMS_FILE, MANIFEST_FILE = "problems.jsonl", "manifest.json"
# The keys that decide which problems and answers a benchmark holds (its preparation's params);
# the rest (prompt, budget, stop strings, batch size) shapes only the generations.
PROBLEM_KEYS = (
    "source",
    "hub_id",
    "hub_config",
    "hub_split",
    "revision",
    "streaming",
    "files",
    "question_field",
    "answer_field",
    "answer_style",
    "problems",
)


def reference_answer(text: str, style: str) -> str | None:
    """The final answer of a reference: GSM8K's number after `####`, a solution's last
    `\\boxed{}`, or the text itself when it is a bare answer (MATH-500's `answer` column)."""
    text = str(text).strip()
    if style == "gsm8k":
        return extract_gsm8k(text)
    return extract_boxed(text) if "\\boxed" in text or "\\fbox" in text else (text or None)


def load_problems(name: str, spec: Mapping) -> list[dict]:
    """The benchmark's first `problems` rows as {id, question, answer}."""
    rows = load_rows(name, spec, kind="benchmark")
    fields = (spec["question_field"], spec["answer_field"])
    problems = []
    for index, row in enumerate(itertools.islice(rows, spec["problems"])):
        missing = [f for f in fields if f not in row]
        if missing:
            raise DataError(
                f"benchmark {name!r}: field {missing[0]!r} (keys 'question_field', 'answer_field') "
                f"is not a column of the data; columns: {', '.join(sorted(row))}"
            )
        answer = reference_answer(row[spec["answer_field"]], spec["answer_style"])
        if answer is None:
            raise DataError(
                f"benchmark {name!r}: row {index} has no final answer in its {spec['answer_field']!r} "
                f"column for answer_style {spec['answer_style']!r}"
            )
        problems.append({"id": f"{name}/{index}", "question": str(row[spec["question_field"]]), "answer": answer})
    if not problems:
        raise DataError(f"benchmark {name!r}: the source holds no problems (key 'source')")
    if spec["problems"] is not None and len(problems) < spec["problems"]:
        raise DataError(
            f"benchmark {name!r}: {spec['problems']} problems asked (key 'problems'), the source holds {len(problems)}"
        )
    return problems


def prepare(name: str, spec: Mapping, out_dir: str | os.PathLike) -> dict:
    """Write the problems and a manifest (source, count, sha256); the manifest last."""
    out_dir = Path(out_dir)
    problems = load_problems(name, spec)
    write_jsonl(out_dir / PROBLEMS_FILE, problems)
    manifest = {
        "benchmark": name,
        "source": {k: spec[k] for k in PROBLEM_KEYS},
        "problems": len(problems),
        "sha256": sha256_text("\n".join(f"{p['question']}\0{p['answer']}" for p in problems)),
    }
    write_json(out_dir / MANIFEST_FILE, manifest)
    return manifest


def problems_of(spec: Mapping, benchmark_dir: str | os.PathLike | None, data_dir: str | os.PathLike) -> list[dict]:
    """A prepared benchmark's problems; a `held_out` one's from the dataset's math_eval split."""
    if spec["source"] == "held_out":
        held_out = read_jsonl(Path(data_dir) / "math_eval.jsonl")
        return [{"id": p["id"], "question": p["question"], "answer": p["answer"]} for p in held_out[: spec["problems"]]]
    if benchmark_dir is None:
        raise ValueError("a prepared benchmark needs its folder")
    read_json(Path(benchmark_dir) / MANIFEST_FILE)  # refuses an unfinished preparation
    return read_jsonl(Path(benchmark_dir) / PROBLEMS_FILE)
