"""Raw data: samples cut from documents, leak-free splits, the request partition, the manifest.

Documents come from a source (sources.py). Each document is cut into *samples* of at most
`max_chars` characters at blank lines, so a sample is a readable piece that starts at a natural
boundary; with `whole_documents` a document is one sample (a problem with its solution), and a
document longer than `max_chars` is dropped and counted in the manifest. Splits are made of whole
document groups: a group that gives a sample to the forget pool
gives nothing to any other split, because forgetting is not targeted when forget and retain share
documents. Tokenizing to the model's `max_length` happens later, where the model is known.

Splits (all deterministic from the seed):
- forget:     the forget pool, ordered; request r is samples [(r-1)*size, r*size)
- holdout:    never trained on, same domain (the non-members of membership inference)
- unseen:     never trained on, same domain, disjoint from holdout (relearning controls)
- retain:     trained on by the base model, never unlearned; retain terms of unlearning train on it
- retain_eval: trained on by the base model only: the samples retain accuracy is measured on
- math_eval:  held-out problems with their final answers (math sources only)
- background: the unassigned groups and the samples that assigned groups had left over; only
              the tokenizer of a from-scratch model trains on it
"""

from __future__ import annotations

import os
import random
import re
import shutil
import tempfile
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from .io import read_json, read_jsonl, sha256_text, write_json, write_jsonl
from .sources import DataError, Document, load_documents, source_version

# Splits filled in this order from the shuffled groups; background takes the rest.
FILLED = ("forget", "holdout", "unseen", "retain", "retain_eval", "math_eval")
SPLITS = (*FILLED, "background")

__all__ = [
    "DataError",
    "Document",
    "SPLITS",
    "SplitPlan",
    "build_splits",
    "load_manifest",
    "load_split",
    "normalise",
    "prepare",
    "requested",
    "segment",
]


# --------------------------------------------------------------------------- samples

_BLANK_LINES = re.compile(r"\n[ \t]*\n+")


def segment(text: str, min_chars: int, max_chars: int) -> list[str]:
    """Cut a document at blank lines into pieces of at most `max_chars`, dropping short ones."""
    paragraphs: list[str] = []
    for paragraph in _BLANK_LINES.split(text.strip("\n")):
        paragraphs.extend(_split_long(paragraph, max_chars))
    samples, current = [], ""
    for paragraph in paragraphs:
        candidate = f"{current}\n\n{paragraph}" if current else paragraph
        if len(candidate) <= max_chars:
            current = candidate
            continue
        samples.append(current)
        current = paragraph
    samples.append(current)
    return [s for s in samples if len(s.strip()) >= min_chars]


def _split_long(paragraph: str, max_chars: int) -> list[str]:
    """A paragraph longer than `max_chars` is cut at line ends (a single long line, anywhere)."""
    if len(paragraph) <= max_chars:
        return [paragraph]
    pieces, current = [], ""
    for line in paragraph.split("\n"):
        while len(line) > max_chars:
            if current:
                pieces.append(current)
                current = ""
            pieces.append(line[:max_chars])
            line = line[max_chars:]
        candidate = f"{current}\n{line}" if current else line
        if len(candidate) <= max_chars:
            current = candidate
        else:
            pieces.append(current)
            current = line
    if current:
        pieces.append(current)
    return pieces


def normalise(text: str) -> str:
    """The exact-duplicate key: text with all whitespace runs folded to one space."""
    return " ".join(text.split())


def skeleton(text: str) -> str:
    """The near-duplicate key: only the letters, lower-cased (catches copies that differ in
    numbers, punctuation or layout, e.g. generated tables for two code pages)."""
    return "".join(ch for ch in text.lower() if ch.isalpha())


def _duplicate_keys(text: str) -> tuple[str, str]:
    return normalise(text), "~" + skeleton(text)


# --------------------------------------------------------------------------- splits


@dataclass(frozen=True)
class SplitPlan:
    forget_requests: int
    request_size: int
    retain: int
    retain_eval: int
    holdout: int
    unseen: int
    math_eval: int
    max_samples_per_document: int
    min_chars: int
    max_chars: int
    background_chars: int
    whole_documents: bool = False

    @classmethod
    def from_spec(cls, spec: Mapping) -> "SplitPlan":
        return cls(**{field: spec[field] for field in cls.__dataclass_fields__})

    @property
    def forget(self) -> int:
        return self.forget_requests * self.request_size

    def wanted(self) -> dict[str, int]:
        sizes = {
            "forget": self.forget,
            "holdout": self.holdout,
            "unseen": self.unseen,
            "retain": self.retain,
            "retain_eval": self.retain_eval,
            "math_eval": self.math_eval,
        }
        return {split: sizes[split] for split in FILLED if sizes[split] > 0}


def samples_of(text: str, plan: SplitPlan) -> list[str]:
    """A document's samples: pieces cut at blank lines, or the whole document when it fits."""
    if not plan.whole_documents:
        return segment(text, plan.min_chars, plan.max_chars)
    whole = text.strip("\n")
    return [whole] if plan.min_chars <= len(whole.strip()) and len(whole) <= plan.max_chars else []


def dropped_documents(documents: list[Document], plan: SplitPlan) -> dict[str, int]:
    """Documents that give no sample because they do not fit whole (with `whole_documents`)."""
    if not plan.whole_documents:
        return {}
    lengths = [len(doc.text.strip("\n")) for doc in documents]
    return {
        "longer_than_max_chars": sum(n > plan.max_chars for n in lengths),
        "shorter_than_min_chars": sum(n < plan.min_chars for n in lengths),
    }


def build_splits(name: str, documents: list[Document], plan: SplitPlan, seed: int) -> dict[str, list[dict]]:
    """Assign whole document groups to the splits in a seeded order; the rest is background."""
    groups: dict[str, list[dict]] = defaultdict(list)
    for doc in documents:
        for k, text in enumerate(samples_of(doc.text, plan)):
            record = {"id": f"{doc.id}#{k}", "document": doc.split_group, "text": text}
            groups[doc.split_group].append((record, doc.answer))
    counts = Counter(
        key for pieces in groups.values() for record, _ in pieces for key in _duplicate_keys(record["text"])
    )
    # A text that occurs twice anywhere (exactly or nearly) is dropped everywhere: no copy can
    # straddle two splits.
    groups = {
        group: [
            (record, answer)
            for record, answer in pieces
            if all(counts[k] == 1 for k in _duplicate_keys(record["text"]))
        ]
        for group, pieces in groups.items()
    }

    order = sorted(groups)
    random.Random(seed).shuffle(order)
    wanted = plan.wanted()
    splits: dict[str, list[dict]] = {split: [] for split in SPLITS}
    filling = iter(wanted)
    current = next(filling, None)
    for group in order:
        pieces = groups[group]
        if current == "math_eval":
            pieces = [(record, answer) for record, answer in pieces if answer]
        if not pieces:
            continue
        if current is None:
            splits["background"].extend(record for record, _ in pieces)
            continue
        room = wanted[current] - len(splits[current])
        take = min(room, plan.max_samples_per_document)
        splits[current].extend(
            {**record, **answer} if current == "math_eval" else record for record, answer in pieces[:take]
        )
        # What the group has left only trains the tokenizer: every split's groups give theirs.
        splits["background"].extend(record for record, _ in pieces[take:])
        if len(splits[current]) == wanted[current]:
            current = next(filling, None)

    _check_sizes(name, splits, wanted, plan, groups, documents)
    for index, record in enumerate(splits["forget"]):
        record["request"] = index // plan.request_size + 1
    splits["background"] = _cap_chars(splits["background"], plan.background_chars)
    return splits


def _check_sizes(name, splits, wanted, plan, groups, documents) -> None:
    for split, size in wanted.items():
        if len(splits[split]) < size:
            usable = sum(map(len, groups.values()))
            too_long = dropped_documents(documents, plan).get("longer_than_max_chars")
            whole = (
                f" With whole_documents, {too_long} documents longer than max_chars = {plan.max_chars} were "
                "dropped: raise 'max_chars' to keep them."
                if too_long
                else ""
            )
            keys = {"forget": "forget_requests x request_size", "math_eval": "math_eval"}
            raise DataError(
                f"dataset {name!r}: not enough samples for the {split} split ({size} wanted, key "
                f"'{keys.get(split, split)}'; {len(splits[split])} found). The source has {usable} usable "
                f"samples in {len(groups)} groups of {len(documents)} documents, at most "
                f"{plan.max_samples_per_document} per group per split and filled in the order "
                f"{', '.join(wanted)}. Lower 'forget_requests', 'request_size', 'holdout', 'unseen', "
                f"'retain', 'retain_eval' or 'math_eval', or raise 'max_samples_per_document'.{whole}"
            )


def _cap_chars(records: list[dict], budget: int) -> list[dict]:
    kept, used = [], 0
    for record in records:
        if used + len(record["text"]) > budget:
            break
        kept.append(record)
        used += len(record["text"])
    return kept


def requested(forget: list[dict], n_requests: int) -> list[dict]:
    """The samples of requests 1..n (the forget set of a cell with N = n)."""
    return [record for record in forget if record["request"] <= n_requests]


# --------------------------------------------------------------------------- files


def prepare(name: str, spec: Mapping, seed: int, out_dir: str | os.PathLike) -> dict:
    """Load, split and write `<out_dir>/<split>.jsonl` and `manifest.json`.

    Everything is written to a temporary folder and moved into place at the end, the manifest
    last, so a failure leaves no partial manifest (and keeps what an earlier run wrote).
    """
    out_dir = Path(out_dir)
    documents = load_documents(name, spec)
    plan = SplitPlan.from_spec(spec)
    splits = build_splits(name, documents, plan, seed)
    manifest = {
        "dataset": name,
        "source": dict(spec),
        "source_version": source_version(spec),
        "seed": seed,
        "documents": len(documents),
        "source_sha256": sha256_text("\0".join(f"{d.id}\0{d.text}" for d in documents)),
        "requests": {"count": spec["forget_requests"], "size": spec["request_size"]},
        "dropped_documents": dropped_documents(documents, plan),
        "splits": {},
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=out_dir))
    try:
        for split, records in splits.items():
            write_jsonl(staging / f"{split}.jsonl", records)
            manifest["splits"][split] = {
                "file": f"{split}.jsonl",
                "samples": len(records),
                "groups": len({r["document"] for r in records}),
                "characters": sum(len(r["text"]) for r in records),
                "sha256": sha256_text("\n".join(r["text"] for r in records)),
            }
        write_json(staging / "manifest.json", manifest)
        for file in sorted(staging.iterdir(), key=lambda p: p.name == "manifest.json"):
            os.replace(file, out_dir / file.name)  # the manifest last: it marks a complete set
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return manifest


def load_split(data_dir: str | os.PathLike, split: str) -> list[dict]:
    path = Path(data_dir) / f"{split}.jsonl"
    if not path.exists():
        raise DataError(f"{path}: missing split file; rerun prepare_data")
    return read_jsonl(path)


def load_manifest(data_dir: str | os.PathLike) -> dict:
    return read_json(Path(data_dir) / "manifest.json")
