import json

import pytest

from reversibility.sources import DataError, load_documents


def table_spec(source, files, **overrides):
    return {
        "source": source,
        "files": [str(f) for f in files],
        "text": "{problem}\nSolution: {solution}",
        "id_field": None,
        "group_field": None,
        "max_documents": None,
        **overrides,
    }


def test_stdlib_source_reads_a_folder_skipping_excluded_dirs(tmp_path):
    (tmp_path / "pkg").mkdir()
    (tmp_path / "tests").mkdir()
    (tmp_path / "pkg" / "a.py").write_text("x = 1\n")
    (tmp_path / "tests" / "test_a.py").write_text("assert True\n")
    (tmp_path / "notes.txt").write_text("not python")
    docs = load_documents("toy", {"source": "stdlib", "path": str(tmp_path), "exclude_dirs": ["tests"]})
    assert [d.id for d in docs] == ["pkg/a.py"]


def test_a_non_utf8_file_is_named(tmp_path):
    (tmp_path / "bad.py").write_bytes(b"x = '\xff\xfe'\n")
    with pytest.raises(DataError, match=r"dataset 'toy'.*bad\.py is not UTF-8"):
        load_documents("toy", {"source": "stdlib", "path": str(tmp_path), "exclude_dirs": []})


def test_a_missing_or_empty_source_is_named(tmp_path):
    with pytest.raises(DataError, match=r"dataset 'toy'.*'path'"):
        load_documents("toy", {"source": "stdlib", "path": str(tmp_path / "nowhere"), "exclude_dirs": []})
    with pytest.raises(DataError, match=r"dataset 'toy'.*yielded no documents"):
        load_documents("toy", {"source": "stdlib", "path": str(tmp_path), "exclude_dirs": []})
    with pytest.raises(DataError, match=r"dataset 'toy'.*does not exist \(key 'files'\)"):
        load_documents("toy", table_spec("json", [tmp_path / "missing.jsonl"]))


def test_docstrings_are_prose_without_doctest_examples(tmp_path, monkeypatch):
    package = tmp_path / "mathpkg"
    package.mkdir()
    (package / "__init__.py").write_text('"""Tools for the Gamma function."""\n')
    (package / "gamma.py").write_text(
        'def gamma(z):\n    """The Gamma function `\\\\Gamma(z) = \\\\int_0^\\\\infty t^{z-1} e^{-t} dt`.\n\n'
        '    >>> gamma(1)\n    1\n\n    It extends the factorial: `\\\\Gamma(n) = (n-1)!`.\n    """\n'
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    docs = load_documents("toy", {"source": "docstrings", "packages": ["mathpkg"], "exclude_dirs": []})
    text = {d.id: d.text for d in docs}["mathpkg/gamma.py"]
    assert "Gamma(z)" in text and "factorial" in text and ">>>" not in text
    with pytest.raises(DataError, match="package 'nopackage' is not installed"):
        load_documents("toy", {"source": "docstrings", "packages": ["nopackage"], "exclude_dirs": []})


def test_gsm_symbolic_problems_carry_answers_and_template_groups():
    docs = load_documents("math", {"source": "gsm_symbolic", "problems": 40, "generator_seed": 0, "text": None})
    assert len(docs) == 40 and len({d.group for d in docs}) < 40
    first = docs[0]
    assert first.text.startswith("Problem: ") and "\nSolution: " in first.text
    assert first.answer["answer"] in first.text and first.answer["question"] in first.text
    assert load_documents("math", {"source": "gsm_symbolic", "problems": 40, "generator_seed": 0, "text": None}) == docs


@pytest.mark.parametrize("kind", ["json", "parquet"])
def test_local_tables_go_through_load_dataset(tmp_path, kind):
    rows = [{"problem": f"What is {i} + 1?", "solution": f"{i + 1}", "source": f"set{i % 3}"} for i in range(9)]
    path = tmp_path / f"rows.{'jsonl' if kind == 'json' else 'parquet'}"
    if kind == "json":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(rows), path)
    docs = load_documents("toy", table_spec(kind, [path], group_field="source", max_documents=6))
    assert [d.text for d in docs] == [f"What is {i} + 1?\nSolution: {i + 1}" for i in range(6)]
    assert [d.group for d in docs] == [f"set{i % 3}" for i in range(6)]


def test_a_missing_text_field_is_named(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_text(json.dumps({"problem": "1 + 1?", "answer": "2"}) + "\n")
    with pytest.raises(DataError, match=r"dataset 'toy': field 'solution'.*columns: answer, problem"):
        load_documents("toy", table_spec("json", [path]))


def test_text_files_are_one_document_each(tmp_path):
    for name in ("a", "b"):
        (tmp_path / f"{name}.txt").write_text(f"Paper {name}.\n\nIt has two paragraphs.\n")
    docs = load_documents("toy", table_spec("text", sorted(tmp_path.glob("*.txt")), text=None))
    assert [d.text for d in docs] == ["Paper a.\n\nIt has two paragraphs.\n", "Paper b.\n\nIt has two paragraphs.\n"]


def test_the_hub_source_calls_load_dataset_with_the_spec(monkeypatch):
    calls = []

    def fake_load_dataset(path, name=None, **kwargs):
        calls.append((path, name, kwargs))
        return iter([{"problem": "p", "solution": "s"}])

    import datasets

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    spec = table_spec(
        "hub", [], hub_id="AI-MO/NuminaMath-CoT", hub_config=None, hub_split="train", revision="main", streaming=True
    )
    assert [d.text for d in load_documents("math", spec)] == ["p\nSolution: s"]
    assert calls == [("AI-MO/NuminaMath-CoT", None, {"split": "train", "revision": "main", "streaming": True})]


def test_document_ids_must_be_unique(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_text(
        "".join(json.dumps({"problem": f"p{i}", "solution": "s", "path": "same.py"}) + "\n" for i in range(2))
    )
    with pytest.raises(DataError, match=r"dataset 'toy': two documents share the id 'same.py' \(key 'id_field'\)"):
        load_documents("toy", table_spec("json", [path], id_field="path"))
