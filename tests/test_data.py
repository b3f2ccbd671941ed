import dataclasses

import pytest

from reversibility import data
from reversibility.data import DataError, Document, SplitPlan, build_splits, normalise, segment

PLAN = SplitPlan(
    forget_requests=3,
    request_size=2,
    retain=6,
    retain_eval=2,
    holdout=4,
    unseen=2,
    math_eval=0,
    max_samples_per_document=2,
    min_chars=20,
    max_chars=120,
    background_chars=10_000,
)


def documents(n: int = 30) -> list[Document]:
    """Distinct documents of four paragraphs each (every paragraph names its document)."""
    words = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta"]
    docs = []
    for i in range(n):
        paragraphs = [
            f"def f{i}_{k}(x):\n    return x * {i} + {k}  # {words[(i + k) % 8]} {words[i % 8]}{i}{'z' * i}"
            for k in range(4)
        ]
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
    assert [len(splits[s]) for s in ("forget", "holdout", "unseen", "retain")] == [6, 4, 2, 6]
    assert [r["request"] for r in splits["forget"]] == [1, 1, 2, 2, 3, 3]
    assert data.requested(splits["forget"], 2) == splits["forget"][:4]


def test_the_first_k_requests_of_a_large_pool_are_the_requests_of_a_small_one():
    many = documents(120)
    big = build_splits(
        "toy", many, dataclasses.replace(PLAN, forget_requests=100, request_size=1, max_samples_per_document=4), seed=0
    )
    for k in (1, 10, 50):
        small = build_splits(
            "toy",
            many,
            dataclasses.replace(PLAN, forget_requests=k, request_size=1, max_samples_per_document=4),
            seed=0,
        )
        assert data.requested(big["forget"], k) == small["forget"]


def test_no_document_or_text_is_shared_between_splits():
    docs = documents()
    # Plant copies that differ only in whitespace, and ones that differ only in numbers.
    docs.append(Document(id="copy.py", text=docs[0].text.replace("\n    ", "\n\t  ")))
    docs.append(Document(id="renumbered.py", text=docs[1].text.replace("1", "7")))
    splits = build_splits("toy", docs, PLAN, seed=0)
    seen_documents, seen_texts = {}, {}
    for split in data.SPLITS:
        for record in splits[split]:
            # Only the tokenizer's background may hold other pieces of an assigned document.
            if split != "background":
                assert seen_documents.setdefault(record["document"], split) == split
            assert seen_texts.setdefault(normalise(record["text"]), split) == split
    assert not any(r["document"] in {"copy.py", "renumbered.py"} for r in splits["forget"] + splits["holdout"])


def test_too_small_a_source_names_the_dataset_and_keys():
    with pytest.raises(DataError, match=r"dataset 'toy'.*forget_requests"):
        build_splits("toy", documents(3), PLAN, seed=0)


def stdlib_spec(root, **overrides):
    return {
        "source": "stdlib",
        "path": str(root),
        "exclude_dirs": [],
        **{k: getattr(PLAN, k) for k in PLAN.__dataclass_fields__},
        **overrides,
    }


def write_sources(root):
    root.mkdir(exist_ok=True)
    for doc in documents():
        (root / doc.id).write_text(doc.text)


def test_prepare_writes_splits_and_a_manifest_with_hashes(tmp_path):
    write_sources(tmp_path / "src")
    manifest = data.prepare("toy", stdlib_spec(tmp_path / "src"), seed=0, out_dir=tmp_path / "out")
    assert manifest["splits"]["forget"]["samples"] == 6
    assert data.load_split(tmp_path / "out", "forget")[0]["request"] == 1
    assert data.load_manifest(tmp_path / "out") == manifest
    assert len(manifest["splits"]["retain"]["sha256"]) == 64
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(
        [f"{s}.jsonl" for s in data.SPLITS] + ["manifest.json"]
    )


def test_a_failed_prepare_leaves_no_partial_manifest_and_keeps_the_old_one(tmp_path):
    write_sources(tmp_path / "src")
    out = tmp_path / "out"
    data.prepare("toy", stdlib_spec(tmp_path / "src"), seed=0, out_dir=out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    with pytest.raises(DataError, match="dataset 'toy'.*'retain'"):
        data.prepare("toy", stdlib_spec(tmp_path / "src", retain=500), seed=1, out_dir=out)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    with pytest.raises(DataError):
        data.prepare("toy", stdlib_spec(tmp_path / "src", retain=500), seed=1, out_dir=tmp_path / "fresh")
    assert not list((tmp_path / "fresh").glob("manifest.json"))


def test_groups_stay_whole_and_math_eval_takes_answered_problems():
    names = [
        a + b
        for a in ("ann", "bob", "cy", "dee", "eve", "fay", "gus", "hal", "ivy", "jo", "kit", "lou")
        for b in ("ra", "mo", "li", "ta", "ne", "su", "ko", "pe", "wi", "zu")
    ]
    docs = [
        Document(
            id=f"p{i}",
            text=f"Problem: {names[i]} has {i} apples. Solution: {i + 1}.",
            group=f"template-{i % 12}",
            answer={"question": f"q{i}", "answer": str(i + 1)},
        )
        for i in range(120)
    ]
    plan = dataclasses.replace(PLAN, math_eval=5, min_chars=10, max_samples_per_document=10)
    splits = build_splits("toy", docs, plan, seed=0)
    owner = {}
    for split in data.FILLED:
        for record in splits[split]:
            assert owner.setdefault(record["document"], split) == split
    assert len(splits["math_eval"]) == 5
    assert all(r["answer"] and r["question"] for r in splits["math_eval"])
    assert "answer" not in splits["forget"][0]


def test_whole_documents_keep_a_problem_with_its_solution_and_count_the_dropped():
    """A problem split at its blank line would give a problem without its solution and a solution
    without its problem; kept whole, each sample is a complete document or nothing."""
    names = [a + b for a in ("ann", "bob", "cy", "dee", "eve") for b in ("ra", "mo", "li", "ta", "ne", "su")]
    solutions = {f"p{i}": f"Solution: {names[i]} counts {i} apples.\n\nSo the answer is {i}." for i in range(30)}
    docs = [
        Document(
            id=doc_id,
            text=f"Problem: how many apples has {names[int(doc_id[1:])]}?\n\n{solution}"
            + ("\n\nA long aside that does not fit." * 8 if int(doc_id[1:]) % 5 == 0 else ""),
        )
        for doc_id, solution in solutions.items()
    ]
    plan = dataclasses.replace(
        PLAN, min_chars=10, max_chars=120, whole_documents=True, forget_requests=2, retain=4, holdout=2
    )
    splits = build_splits("toy", docs, plan, seed=0)
    kept = [r for split in data.FILLED for r in splits[split]]
    assert kept and all(r["text"].startswith("Problem:") and solutions[r["document"]] in r["text"] for r in kept)
    assert not any(int(r["document"][1:]) % 5 == 0 for split in splits.values() for r in split)
    assert data.dropped_documents(docs, plan) == {"longer_than_max_chars": 6, "shorter_than_min_chars": 0}
    cut = build_splits("toy", docs, dataclasses.replace(plan, whole_documents=False, max_chars=60), seed=0)
    assert any(not r["text"].startswith("Problem:") for split in data.FILLED for r in cut[split])


def test_the_manifest_counts_the_documents_too_long_to_keep_whole(tmp_path):
    from reversibility.io import write_jsonl

    names = [a + b for a in ("ann", "bob", "cy", "dee", "eve", "fay") for b in ("ra", "mo", "li", "ta", "ne")]
    rows = [
        {
            "question": f"What has {names[i % 30]}{'x' * (i // 30)}? " + "Think. " * (i % 3) * 10,
            "answer": f"It is {2 * i}.",
        }
        for i in range(60)
    ]
    write_jsonl(tmp_path / "rows.jsonl", rows)
    spec = {
        "source": "json",
        "files": [str(tmp_path / "rows.jsonl")],
        "text": "Q: {question}\n\nA: {answer}",
        "id_field": None,
        "group_field": None,
        "max_documents": None,
        "forget_requests": 2,
        "request_size": 2,
        "retain": 4,
        "retain_eval": 2,
        "holdout": 2,
        "unseen": 2,
        "math_eval": 0,
        "max_samples_per_document": 1,
        "min_chars": 10,
        "max_chars": 60,
        "background_chars": 1000,
        "whole_documents": True,
    }
    manifest = data.prepare("rows", spec, 0, tmp_path / "out")
    assert manifest["dropped_documents"] == {"longer_than_max_chars": 40, "shorter_than_min_chars": 0}
