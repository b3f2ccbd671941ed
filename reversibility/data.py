"""Raw data: documents from a source, samples cut at paragraph boundaries, leak-free splits.

A *document* is one unit of the domain (a source file, a paper, a problem). Documents are cut
into *samples* of at most `max_chars` characters at blank lines, so a sample is a readable piece
that starts at a natural boundary. Splits are made of whole documents: a document that gives a
sample to the forget pool gives nothing to retain or holdout, because forgetting is not targeted
when forget and retain share documents. Tokenizing to the model's `max_length` happens later,
where the model is known.

Splits (all deterministic from the seed):
- forget:     the forget pool, ordered; request r is samples [(r-1)*size, r*size)
- retain:     trained on, never unlearned
- holdout:    never trained on, same domain (the non-members of membership inference)
- background: the rest of the domain's documents (tokenizer training); never trained on
"""

from __future__ import annotations

import os
import random
import re
import sysconfig
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator, Mapping

from .io import read_json, read_jsonl, sha256_text, write_json, write_jsonl

SPLITS = ("forget", "retain", "holdout", "background")


class DataError(ValueError):
    """Bad data input; the message names the dataset and the key."""


@dataclass(frozen=True)
class Document:
    id: str
    text: str


# --------------------------------------------------------------------------- sources

def stdlib_documents(name: str, spec: Mapping) -> Iterator[Document]:
    """Python standard library sources, one document per module file, test folders skipped."""
    root = Path(spec.get("path") or sysconfig.get_paths()["stdlib"])
    if not root.is_dir():
        raise DataError(f"dataset {name!r}: source path {str(root)!r} is not a directory (key 'path')")
    excluded = set(spec["exclude_dirs"])
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in excluded)
        for filename in sorted(filenames):
            if not filename.endswith(".py"):
                continue
            path = Path(dirpath, filename)
            yield Document(id=str(path.relative_to(root)), text=_read_utf8(name, path))


def _read_utf8(name: str, path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise DataError(f"dataset {name!r}: {path} is not UTF-8 ({err.reason} at byte {err.start})") from None


SOURCES: dict[str, Callable[[str, Mapping], Iterable[Document]]] = {
    "stdlib": stdlib_documents,
}


def load_documents(name: str, spec: Mapping) -> list[Document]:
    source = spec["source"]
    if source not in SOURCES:
        raise DataError(f"dataset {name!r}: unknown source {source!r} (key 'source'); "
                        f"known: {', '.join(sorted(SOURCES))}")
    documents = list(SOURCES[source](name, spec))
    if not documents:
        raise DataError(f"dataset {name!r}: source {source!r} yielded no documents")
    return documents


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
    holdout: int
    max_samples_per_document: int
    min_chars: int
    max_chars: int
    background_chars: int

    @classmethod
    def from_spec(cls, spec: Mapping) -> "SplitPlan":
        return cls(**{field: spec[field] for field in cls.__dataclass_fields__})

    @property
    def forget(self) -> int:
        return self.forget_requests * self.request_size


def build_splits(name: str, documents: list[Document], plan: SplitPlan, seed: int) -> dict[str, list[dict]]:
    """Assign whole documents to forget, holdout and retain in a seeded order; the rest is background."""
    per_document = {doc.id: segment(doc.text, plan.min_chars, plan.max_chars) for doc in documents}
    counts = Counter(key for samples in per_document.values() for s in samples
                     for key in _duplicate_keys(s))
    # A text that occurs twice anywhere (exactly or nearly) is dropped everywhere: no copy can
    # straddle two splits.
    per_document = {doc: [s for s in samples if all(counts[k] == 1 for k in _duplicate_keys(s))]
                    for doc, samples in per_document.items()}

    order = sorted(per_document)
    random.Random(seed).shuffle(order)
    wanted = {"forget": plan.forget, "holdout": plan.holdout, "retain": plan.retain}
    splits: dict[str, list[dict]] = {split: [] for split in SPLITS}
    filling = iter(wanted)
    current = next(filling)
    for doc_id in order:
        samples = per_document[doc_id]
        if not samples:
            continue
        if current is None:
            splits["background"].extend(_records(doc_id, samples))
            continue
        room = wanted[current] - len(splits[current])
        take = samples[: min(room, plan.max_samples_per_document)]
        splits[current].extend(_records(doc_id, take))
        if len(splits[current]) == wanted[current]:
            current = next(filling, None)

    for split, size in wanted.items():
        if len(splits[split]) < size:
            available = sum(map(len, per_document.values()))
            raise DataError(
                f"dataset {name!r}: not enough samples for the {split} split "
                f"(forget {plan.forget} = forget_requests x request_size, retain {plan.retain}, "
                f"holdout {plan.holdout}; at most {plan.max_samples_per_document} per document; "
                f"{available} usable samples in {len(documents)} documents). "
                f"Lower 'forget_requests', 'request_size', 'retain' or 'holdout', "
                f"or raise 'max_samples_per_document'.")
    for index, record in enumerate(splits["forget"]):
        record["request"] = index // plan.request_size + 1
    splits["background"] = _cap_chars(splits["background"], plan.background_chars)
    return splits


def _records(doc_id: str, samples: list[str]) -> list[dict]:
    return [{"id": f"{doc_id}#{k}", "document": doc_id, "text": text} for k, text in enumerate(samples)]


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
    """Load, split and write `<out_dir>/<split>.jsonl` and `manifest.json` (written last)."""
    out_dir = Path(out_dir)
    documents = load_documents(name, spec)
    splits = build_splits(name, documents, SplitPlan.from_spec(spec), seed)
    manifest = {
        "dataset": name,
        "source": dict(spec),
        "seed": seed,
        "documents": len(documents),
        "source_sha256": sha256_text("\0".join(f"{d.id}\0{d.text}" for d in documents)),
        "requests": {"count": spec["forget_requests"], "size": spec["request_size"]},
        "splits": {},
    }
    for split, records in splits.items():
        path = out_dir / f"{split}.jsonl"
        write_jsonl(path, records)
        manifest["splits"][split] = {
            "file": path.name,
            "samples": len(records),
            "documents": len({r["document"] for r in records}),
            "characters": sum(len(r["text"]) for r in records),
            "sha256": sha256_text("\n".join(r["text"] for r in records)),
        }
    write_json(out_dir / "manifest.json", manifest)
    return manifest


def load_split(data_dir: str | os.PathLike, split: str) -> list[dict]:
    path = Path(data_dir) / f"{split}.jsonl"
    if not path.exists():
        raise DataError(f"{path}: missing split file; rerun prepare_data")
    return read_jsonl(path)


def load_manifest(data_dir: str | os.PathLike) -> dict:
    return read_json(Path(data_dir) / "manifest.json")
