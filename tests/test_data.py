from pathlib import Path

import pytest

from reversibility import data
from reversibility.data import DataError, Document, SplitPlan, build_splits, normalise, segment

PLAN = SplitPlan(forget_requests=3, request_size=2, retain=6, holdout=4, max_samples_per_document=2,
                 min_chars=20, max_chars=120, background_chars=10_000)


def documents(n: int = 30) -> list[Document]:
    """Distinct documents of four paragraphs each (every paragraph names its document)."""
    words = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta"]
    docs = []
    for i in range(n):
        paragraphs = [f"def f{i}_{k}(x):\n    return x * {i} + {k}  # {words[(i + k) % 8]} {words[i % 8]}{i}{'z' * i}"
                      for k in range(4)]
        docs.append(Document(id=f"doc{i}.py", text="\n\n".join(paragraphs)))
    return docs


def test_segment_cuts_at_blank_lines_within_bounds():
    text = "a" * 50 + "\n\n" + "b" * 50 + "\n\n\n" + "c" * 50 + "\n\n" + "d" * 10
    pieces = segment(text, min_chars=20, max_chars=110)
    assert pieces == ["a" * 50 + "\n\n" + "b" * 50, "c" * 50 + "\n\n" + "d" * 10]


def test_segment_splits_an_overlong_paragraph_at_line_ends():
    paragraph = "\n".join(f"line {i:03d} " + "x" * 20 for i in range(20))
    pieces = segment(paragraph, min_chars=1, max_chars=100)
    assert all(len(p) <= 100 for p in pieces)
    assert "\n".join(pieces) == paragraph


def test_segment_drops_short_pieces():
    assert segment("tiny\n\n" + "y" * 40, min_chars=10, max_chars=40) == ["y" * 40]


def test_splits_are_deterministic_and_change_with_the_seed():
    first = build_splits("toy", documents(), PLAN, seed=1)
    again = build_splits("toy", documents(), PLAN, seed=1)
    other = build_splits("toy", documents(), PLAN, seed=2)
    assert first == again
    assert [r["id"] for r in first["forget"]] != [r["id"] for r in other["forget"]]


def test_splits_have_the_requested_sizes_and_requests():
    splits = build_splits("toy", documents(), PLAN, seed=0)
    assert len(splits["forget"]) == 6 and len(splits["retain"]) == 6 and len(splits["holdout"]) == 4
    assert [r["request"] for r in splits["forget"]] == [1, 1, 2, 2, 3, 3]
    assert data.requested(splits["forget"], 2) == splits["forget"][:4]


def test_no_document_or_text_is_shared_between_splits():
    docs = documents()
    # Plant copies that differ only in whitespace, and ones that differ only in numbers.
    docs.append(Document(id="copy.py", text=docs[0].text.replace("\n    ", "\n\t  ")))
    docs.append(Document(id="renumbered.py", text=docs[1].text.replace("1", "7")))
    splits = build_splits("toy", docs, PLAN, seed=0)
    seen_documents, seen_texts = {}, {}
    for split in ("forget", "retain", "holdout", "background"):
        for record in splits[split]:
            assert seen_documents.setdefault(record["document"], split) == split
            assert seen_texts.setdefault(normalise(record["text"]), split) == split
    assert not any(r["document"] in {"copy.py", "renumbered.py"} for r in splits["forget"] + splits["holdout"])


def test_too_small_a_source_names_the_dataset_and_keys():
    with pytest.raises(DataError, match=r"dataset 'toy'.*forget_requests"):
        build_splits("toy", documents(3), PLAN, seed=0)


def test_stdlib_source_reads_a_folder_skipping_excluded_dirs(tmp_path):
    (tmp_path / "pkg").mkdir()
    (tmp_path / "tests").mkdir()
    (tmp_path / "pkg" / "a.py").write_text("x = 1\n")
    (tmp_path / "tests" / "test_a.py").write_text("assert True\n")
    (tmp_path / "notes.txt").write_text("not python")
    docs = list(data.stdlib_documents("toy", {"path": str(tmp_path), "exclude_dirs": ["tests"]}))
    assert [d.id for d in docs] == ["pkg/a.py"]


def test_a_non_utf8_file_is_named(tmp_path):
    (tmp_path / "bad.py").write_bytes(b"x = '\xff\xfe'\n")
    with pytest.raises(DataError, match=r"dataset 'toy'.*bad\.py is not UTF-8"):
        list(data.stdlib_documents("toy", {"path": str(tmp_path), "exclude_dirs": []}))


def test_prepare_writes_splits_and_a_manifest_with_hashes(tmp_path):
    for doc in documents():
        (tmp_path / "src").mkdir(exist_ok=True)
        (tmp_path / "src" / doc.id).write_text(doc.text)
    spec = {"source": "stdlib", "path": str(tmp_path / "src"), "exclude_dirs": [],
            **{k: getattr(PLAN, k) for k in PLAN.__dataclass_fields__}}
    manifest = data.prepare("toy", spec, seed=0, out_dir=tmp_path / "out")
    assert manifest["splits"]["forget"]["samples"] == 6
    assert data.load_split(tmp_path / "out", "forget")[0]["request"] == 1
    assert data.load_manifest(tmp_path / "out") == manifest
    assert len(manifest["splits"]["retain"]["sha256"]) == 64
