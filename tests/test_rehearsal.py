"""A rehearsal of the paper's setting on this machine: `configs/paper.yaml` with its hub sources
swapped for local files of the same columns and its 6-7B models for a micro scratch model, every
size, N, budget, method, benchmark and max_length kept. The whole grid passes the checks and
plans; the N = 100 cell of one method then runs end to end (unlearning 100 requests, relearning
with its controls and budgets, captures with the GSM8K and MATH-500 answers, metrics,
diagnostics, tables, figures)."""

import copy
import json
import random
import string

import pytest
import yaml
from conftest import REPO, plan, run_snakemake

from reversibility.activations import Capture
from reversibility.io import read_json
from reversibility.tables import read_csv

pytestmark = pytest.mark.slow

PAPER = yaml.safe_load((REPO / "configs" / "paper.yaml").read_text())
EXPERIMENT = next(e for e in PAPER["experiments"] if e.get("benchmarks"))  # Qwen2.5-7B on NuminaMath
METHOD, N, LR = "npo", max(PAPER["grid"][0]["n_requests"]), min(PAPER["grid"][0]["learning_rates"])
CELL = f"{EXPERIMENT['model']}/{EXPERIMENT['dataset']}/{METHOD}/n{N}/lr{LR:g}/s0"
# What replaces a 6-7B model: the same max_length, dtype and base training, a micro shape,
# positions for the longest benchmark budget after a prompt, and both cores for each job.
MICRO = {
    "source": "scratch",
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_layers": 2,
    "num_heads": 2,
    "vocab_size": 512,
    "threads": 2,
}
BENCHMARK_PROBLEMS = 12


def words(rng: random.Random, n: int) -> str:
    return " ".join("".join(rng.choices(string.ascii_lowercase, k=rng.randint(3, 9))) for _ in range(n))


def rows_like(dataset: str, spec: dict, count: int, rng: random.Random) -> list[dict]:
    """Rows with the columns of the dataset's hub source, every text distinct and within its bounds."""
    if dataset == "numinamath":
        return [
            {
                "problem": f"Problem {i}: {words(rng, 30)}?",
                "solution": f"{words(rng, 40)}.\n\n{words(rng, 20)}, so the answer is $\\boxed{{{i}}}$.",
            }
            for i in range(count)
        ]
    if dataset == "github":
        return [
            {
                "content": f"def f_{i}(x):\n    # {words(rng, 40)}\n    return x + {i}\n\n# {words(rng, 40)}\n",
                "repo_name": f"owner/repo{i // 2}",
            }
            for i in range(count)
        ]
    return [{"article": f"{words(rng, 60)}.\n\n{words(rng, 60)}."} for i in range(count)]


def benchmark_rows(style: str, rng: random.Random) -> list[dict]:
    """GSM8K's columns (worked answer ending in '#### n') or MATH-500's (problem, bare answer)."""
    if style == "gsm8k":
        return [
            {
                "question": f"{words(rng, 12)}: what is {i} + {i}?",
                "answer": f"{i} + {i} = <<{i}+{i}={2 * i}>>{2 * i}\n#### {2 * i}",
            }
            for i in range(BENCHMARK_PROBLEMS)
        ]
    return [
        {
            "problem": f"Compute $\\frac{{{i}}}{{2}}$ ({words(rng, 6)}).",
            "answer": f"\\frac{{{i}}}{{2}}",
            "solution": f"It is $\\boxed{{\\frac{{{i}}}{{2}}}}$.",
            "subject": "Algebra",
            "level": 1,
        }
        for i in range(BENCHMARK_PROBLEMS)
    ]


def write_jsonl(path, rows) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def rehearsal_config(workdir) -> dict:
    """The paper config with local files for its hub sources and a micro model for each LLM."""
    config = copy.deepcopy(PAPER)
    rng = random.Random(0)
    for name, spec in config["datasets"].items():
        needed = spec["forget_requests"] * spec["request_size"] + sum(
            spec[split] for split in ("retain", "retain_eval", "holdout", "unseen")
        )
        count = needed + 200 if name == EXPERIMENT["dataset"] else 64  # only one experiment runs
        spec["files"] = [write_jsonl(workdir / f"{name}.jsonl", rows_like(name, spec, count, rng))]
        spec["source"] = "json"
        for key in ("hub_id", "hub_config", "hub_split", "streaming"):
            spec.pop(key, None)
    for name, spec in config["benchmarks"].items():
        spec["files"] = [write_jsonl(workdir / f"{name}.jsonl", benchmark_rows(spec["answer_style"], rng))]
        spec["source"] = "json"
        for key in ("hub_id", "hub_config", "hub_split"):
            spec.pop(key, None)
    longest = max(spec["max_new_tokens"] for spec in config["benchmarks"].values())
    for name, spec in config["models"].items():
        config["models"][name] = {
            **MICRO,
            "architecture": "qwen2" if "qwen" in name else "llama",
            "max_positions": spec["max_length"] + longest,
            **{key: spec[key] for key in ("max_length", "dtype", "base_training")},
        }
    return config


@pytest.fixture(scope="module")
def rehearsal(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("rehearsal")
    config = rehearsal_config(workdir)
    (workdir / "paper-local.yaml").write_text(yaml.safe_dump(config))
    one_cell = {
        **config,
        "experiments": [EXPERIMENT],
        "grid": {"methods": [METHOD], "n_requests": [N], "learning_rates": [LR]},
    }
    (workdir / "config.yaml").write_text(yaml.safe_dump(one_cell))
    result = run_snakemake(workdir, "--cores", "2")
    if result.returncode != 0:
        pytest.fail(f"the rehearsal failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}")
    return workdir, config


def test_the_whole_paper_grid_passes_the_checks_and_plans(rehearsal, tmp_path):
    _, config = rehearsal
    planned = plan(tmp_path, config)
    cells = [p for p in planned if p.startswith("results/runs/") and p.endswith("/relearned")]
    assert len(cells) == 396
    assert {"results/benchmarks/gsm8k/problems.jsonl", "results/benchmarks/math500/problems.jsonl"} <= set(planned)


def test_the_n100_cell_unlearns_every_request_and_relearns_at_every_budget(rehearsal):
    workdir, config = rehearsal
    requests = read_json(workdir / f"results/metrics/{CELL}/requests.json")
    assert [r["request"] for r in requests["requests"]] == list(range(1, N + 1))
    reversal = read_json(workdir / f"results/metrics/{CELL}/reversal.json")
    relearning = config["relearning"]
    request_size = config["datasets"][EXPERIMENT["dataset"]]["request_size"]
    # The budget matched to the forget set: 2 passes over 800 samples in batches of 8, a run of its own.
    matched = reversal["matched_steps"]
    assert matched == 2 * N * request_size // relearning["batch_size"] == 200
    budgets = {(b["steps"], b["learning_rate"]) for b in reversal["budgets"]}
    assert budgets == {(relearning["steps"], relearning["learning_rate"]), (matched, relearning["learning_rate"])} | {
        (b["steps"], b["learning_rate"]) for b in relearning["budgets"]
    }
    assert [b["steps"] for b in reversal["budgets"] if b["matched"]] == [matched]
    forgotten_tokens = reversal["unlearned"]["forget"]["tokens"]
    assert reversal["unlearned"]["unseen"]["tokens"] > 0.5 * forgotten_tokens  # a control as large
    metrics = read_json(workdir / f"results/metrics/{CELL}/unlearned.json")
    assert metrics["forget"]["n_samples"] == N * request_size


def test_captures_keep_the_paper_lengths_and_answer_both_benchmarks(rehearsal):
    workdir, config = rehearsal
    spec = config["models"][EXPERIMENT["model"]]
    with Capture(workdir / f"results/activations/{CELL}/relearned.h5") as capture:
        assert capture.attr("max_length") == spec["max_length"]
        assert capture.token_stats("forget")["mask"].shape[1] == spec["max_length"] - 1
        answered = capture.benchmarks()
    assert set(answered) == {"gsm8k", "math500"}
    assert all(len(a["generations"]) == BENCHMARK_PROBLEMS for a in answered.values())
    table = read_csv(workdir / "results/tables/benchmarks.csv")
    assert {(r["stage"], r["benchmark"]) for r in table} == {
        (stage, name) for stage in ("base", "unlearned", "relearned") for name in ("gsm8k", "math500")
    }
    assert all(int(r["problems"]) == BENCHMARK_PROBLEMS for r in table)
    figure = workdir / f"results/figures/{EXPERIMENT['model']}/{EXPERIMENT['dataset']}/benchmark_accuracy.png"
    assert figure.read_bytes().startswith(b"\x89PNG")


def test_the_tables_and_diagnostics_hold_the_cell(rehearsal):
    workdir, _ = rehearsal
    metrics = read_csv(workdir / "results/tables/metrics.csv")
    assert {r["stage"] for r in metrics} == {"base", "unlearned", "relearned"}
    summary = read_csv(workdir / "results/tables/representation_summary.csv")
    assert {r["stage"] for r in summary} == {"unlearned", "relearned"}
    diagnostics = read_json(workdir / f"results/diagnostics/{CELL}/unlearned.json")
    assert diagnostics["fisher"]["layers"]
    record = read_json(workdir / f"results/runs/{CELL}/unlearned/provenance.json")
    assert record["precision"]["weights"] == "float32"
