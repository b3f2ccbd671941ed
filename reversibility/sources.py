"""Document sources: where a dataset's raw text comes from.

Each source turns a dataset spec into `Document`s. Documents that share a `group` (a source file's
pieces, problems generated from one template, the files of one repository) always land in the
same split, so no split learns what another one holds.

- `stdlib`       Python standard library sources, one document per module (the code domain)
- `docstrings`   docstrings of installed scientific packages, one document per module: math-heavy
                 technical prose (the stand-in for arXiv papers)
- `gsm_symbolic` GSM8K-style word problems with worked solutions from `reasoning-gym`, grouped by
                 template (the stand-in for NuminaMath); they also give math-answer evaluation sets
- `hub`          a Hugging Face dataset through `datasets.load_dataset`
- `json`, `parquet`, `text`   local files through the same `load_dataset` path (no network)
"""

from __future__ import annotations

import ast
import importlib.metadata
import importlib.util
import itertools
import os
import platform
import string
import sysconfig
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator, Mapping


class DataError(ValueError):
    """Bad data input; the message names the dataset and the key."""


@dataclass(frozen=True)
class Document:
    id: str
    text: str
    group: str | None = None
    # For math problems: the question alone and its final answer (math-answer evaluation).
    answer: Mapping[str, str] = field(default_factory=dict)

    @property
    def split_group(self) -> str:
        return self.group if self.group is not None else self.id


# --------------------------------------------------------------------------- local code and prose


def stdlib_documents(name: str, spec: Mapping) -> Iterator[Document]:
    """Python standard library sources, one document per module file, test folders skipped."""
    root = Path(spec.get("path") or sysconfig.get_paths()["stdlib"])
    if not root.is_dir():
        raise DataError(f"dataset {name!r}: source path {str(root)!r} is not a directory (key 'path')")
    for path in _python_files(root, set(spec["exclude_dirs"])):
        yield Document(id=str(path.relative_to(root)), text=_read_utf8(name, path))


def docstring_documents(name: str, spec: Mapping) -> Iterator[Document]:
    """The docstrings of each module of the listed packages, doctest examples left out."""
    for package in spec["packages"]:
        found = importlib.util.find_spec(package)
        if found is None or not found.submodule_search_locations:
            raise DataError(f"dataset {name!r}: package {package!r} is not installed (key 'packages')")
        root = Path(next(iter(found.submodule_search_locations)))
        for path in _python_files(root, set(spec["exclude_dirs"])):
            try:
                tree = ast.parse(_read_utf8(name, path))
            except SyntaxError:
                continue
            prose = [
                p
                for node in ast.walk(tree)
                if isinstance(node, _DOCUMENTED)
                for p in [_without_examples(ast.get_docstring(node) or "")]
                if p
            ]
            if prose:
                yield Document(id=f"{package}/{path.relative_to(root)}", text="\n\n".join(prose))


_DOCUMENTED = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)


def _without_examples(docstring: str) -> str:
    """Drop doctest paragraphs (they are code, not prose)."""
    paragraphs = docstring.split("\n\n")
    return "\n\n".join(p for p in paragraphs if not p.lstrip().startswith((">>>", "...")) and p.strip())


def _python_files(root: Path, excluded: set[str]) -> Iterator[Path]:
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in excluded)
        for filename in sorted(filenames):
            if filename.endswith(".py"):
                yield Path(dirpath, filename)


def _read_utf8(name: str, path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise DataError(f"dataset {name!r}: {path} is not UTF-8 ({err.reason} at byte {err.start})") from None


# --------------------------------------------------------------------------- math problems

GSM_SUFFIX = " Give the result as your final answer. Do not include units."
MATH_TEMPLATE = "Problem: {problem}\nSolution: {solution}"


def gsm_symbolic_documents(name: str, spec: Mapping) -> Iterator[Document]:
    """GSM8K-style problems from reasoning-gym's GSM-Symbolic templates; a template is a group."""
    try:
        import reasoning_gym
    except ImportError:
        raise DataError(f"dataset {name!r}: source 'gsm_symbolic' needs the package reasoning-gym") from None
    dataset = reasoning_gym.create_dataset("gsm_symbolic", size=spec["problems"], seed=spec["generator_seed"])
    for index in range(spec["problems"]):
        item = dataset[index]
        question = item["question"].removesuffix(GSM_SUFFIX)
        solution = item["metadata"]["answer_cot"]
        yield Document(
            id=f"gsm_symbolic/{index}",
            text=(spec.get("text") or MATH_TEMPLATE).format(problem=question, solution=solution),
            group=f"template-{dataset.task_indices[index]}",
            answer={"question": question, "answer": str(item["answer"]), "style": "gsm8k"},
        )


# --------------------------------------------------------------------------- tables (hub and files)


def table_documents(name: str, spec: Mapping) -> Iterator[Document]:
    """Rows of a Hugging Face dataset or of local files, formatted by the `text` template."""
    rows = load_rows(name, spec)
    template = spec.get("text") or ("{text}" if spec["source"] == "text" else None)
    if not template:
        raise DataError(
            f"dataset {name!r}: source {spec['source']!r} needs 'text', a template of the "
            f"columns that make a sample, e.g. '{{problem}}\\n{{solution}}'"
        )
    fields = template_fields(template)
    needed = fields | {f for f in (spec.get("id_field"), spec.get("group_field")) if f}
    for index, row in enumerate(itertools.islice(rows, spec.get("max_documents"))):
        missing = sorted(needed - set(row))
        if missing:
            raise DataError(
                f"dataset {name!r}: field {missing[0]!r} (keys 'text', 'id_field', 'group_field') "
                f"is not a column of the data; columns: {', '.join(sorted(row))}"
            )
        text = template.format(**{f: row[f] for f in fields})
        doc_id = str(row[spec["id_field"]]) if spec.get("id_field") else str(index)
        group = str(row[spec["group_field"]]) if spec.get("group_field") else None
        yield Document(id=doc_id, text=text, group=group)


def load_rows(name: str, spec: Mapping, kind: str = "dataset") -> Iterable[Mapping]:
    """The rows of a hub dataset or of local files; errors name the `kind` (dataset, benchmark)."""
    from datasets import load_dataset

    source = spec["source"]
    if source == "hub":
        if not spec.get("hub_id"):
            raise DataError(f"{kind} {name!r}: source 'hub' needs 'hub_id'")
        return load_dataset(
            spec["hub_id"],
            spec.get("hub_config"),
            split=spec["hub_split"],
            revision=spec.get("revision"),
            streaming=spec["streaming"],
        )
    files = [str(Path(f)) for f in spec.get("files") or []]
    if not files:
        raise DataError(f"{kind} {name!r}: source {source!r} needs 'files'")
    for file in files:
        if not Path(file).is_file():
            raise DataError(f"{kind} {name!r}: file {file!r} does not exist (key 'files')")
    options = {"sample_by": "document"} if source == "text" else {}
    try:
        return load_dataset(source, data_files=files, split="train", **options)
    except Exception as err:  # datasets raises many types for unreadable files
        raise DataError(f"{kind} {name!r}: cannot read {', '.join(files)} as {source} (key 'files'): {err}") from None


def template_fields(template: str) -> set[str]:
    return {field for _, field, _, _ in string.Formatter().parse(template) if field}


# --------------------------------------------------------------------------- registry

SOURCES: dict[str, Callable[[str, Mapping], Iterable[Document]]] = {
    "stdlib": stdlib_documents,
    "docstrings": docstring_documents,
    "gsm_symbolic": gsm_symbolic_documents,
    "hub": table_documents,
    "json": table_documents,
    "parquet": table_documents,
    "text": table_documents,
}


def load_documents(name: str, spec: Mapping) -> list[Document]:
    source = spec["source"]
    if source not in SOURCES:
        raise DataError(
            f"dataset {name!r}: unknown source {source!r} (key 'source'); known: {', '.join(sorted(SOURCES))}"
        )
    documents = list(SOURCES[source](name, spec))
    if not documents:
        raise DataError(f"dataset {name!r}: source {source!r} yielded no documents (key 'source')")
    seen: set[str] = set()
    for doc in documents:
        if doc.id in seen:
            raise DataError(
                f"dataset {name!r}: two documents share the id {doc.id!r} (key 'id_field'); "
                "name a column with unique values, or none for row numbers"
            )
        seen.add(doc.id)
    return documents


def source_version(spec: Mapping) -> dict[str, str]:
    """What the source's content depends on besides the spec: a Python or package version."""
    source = spec["source"]
    if source == "stdlib" and not spec.get("path"):
        return {"python": platform.python_version()}
    if source == "docstrings":
        return {package: _version(package) for package in spec["packages"]}
    if source == "gsm_symbolic":
        return {"reasoning-gym": _version("reasoning-gym")}
    return {}


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"
