"""Runs that are killed, rerun or pushed to divergence end with the results of a clean run."""

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from conftest import MICRO_CONFIG, SNAKEFILE, run_snakemake

from reversibility.figures import per_experiment
from reversibility.io import read_json
from reversibility.tables import read_csv

pytestmark = pytest.mark.slow


def results_of(workdir: Path) -> dict[str, object]:
    """Every number a run reports: metrics and diagnostics JSONs (not their provenance sidecars,
    which hold times) and the tables."""
    found = {}
    for folder in ("metrics", "diagnostics"):
        for path in sorted((workdir / "results" / folder).rglob("*.json")):
            if not path.name.endswith(".meta.json"):
                found[str(path.relative_to(workdir))] = read_json(path)
    for path in sorted((workdir / "results/tables").glob("*.csv")):
        found[str(path.relative_to(workdir))] = read_csv(path)
    return found


def fresh_workdir(tmp_path: Path) -> Path:
    workdir = tmp_path / "run"
    workdir.mkdir()
    shutil.copy(MICRO_CONFIG, workdir / "config.yaml")
    return workdir


def test_two_runs_from_scratch_give_identical_results(micro_run, tmp_path):
    workdir = fresh_workdir(tmp_path)
    result = run_snakemake(workdir, "--cores", "2")
    assert result.returncode == 0, result.stderr[-3000:]
    first, second = results_of(micro_run), results_of(workdir)
    assert len(first) > 20 and first.keys() == second.keys()
    for key in first:
        assert first[key] == second[key], key


def kill_when_running(workdir: Path, log_folder: str, delay: float, timeout: float = 600) -> float:
    """Start the workflow; SIGKILL it, jobs included, `delay` seconds after a job of
    `log_folder` started (its log appeared). Returns the time the kill was sent."""
    started = time.time()
    # A killed Snakemake leaves its lock behind: a user unlocks before rerunning.
    assert run_snakemake(workdir, "--unlock").returncode == 0
    process = subprocess.Popen(
        [sys.executable, "-m", "snakemake", "--snakefile", str(SNAKEFILE), "--cores", "2", "--rerun-incomplete"],
        cwd=workdir,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    logs = workdir / "results/logs" / log_folder
    try:
        while time.time() - started < timeout:
            if logs.exists() and any(p.stat().st_mtime >= started for p in logs.rglob("*.log")):
                time.sleep(delay)
                os.killpg(process.pid, signal.SIGKILL)
                assert process.wait() == -signal.SIGKILL, f"the run ended before a {log_folder} job was killed"
                return time.time()
            if process.poll() is not None:
                pytest.fail(f"the run ended (rc {process.returncode}) before any {log_folder} job started")
            time.sleep(0.05)
        pytest.fail(f"no {log_folder} job started within {timeout} s")
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def test_a_run_killed_during_unlearning_capture_and_metrics_resumes_to_the_clean_results(micro_run, tmp_path):
    workdir = fresh_workdir(tmp_path)
    # Into training, into the first capture of relearning, and into metrics (a job of seconds).
    for stage, delay in (("unlearn", 4.0), ("relearn", 4.0), ("metrics", 0.5)):
        kill_when_running(workdir, stage, delay)
    assert run_snakemake(workdir, "--unlock").returncode == 0
    result = run_snakemake(workdir, "--cores", "2", "--rerun-incomplete")
    assert result.returncode == 0, result.stderr[-3000:]
    assert results_of(workdir) == results_of(micro_run)


def test_a_corrupted_capture_is_refused_and_rebuilt_by_forcing_its_rule(micro_copy):
    capture = "results/activations/micro/github/ga/n2/lr0.001/s0/unlearned.h5"
    metrics = "results/metrics/micro/github/ga/n2/lr0.001/s0/unlearned.json"
    before = read_json(micro_copy / metrics)
    path = micro_copy / capture
    data = bytearray(path.read_bytes())
    data[len(data) // 2 :] = bytes(len(data) - len(data) // 2)  # the second half zeroed
    path.write_bytes(bytes(data))
    refused = run_snakemake(micro_copy, "--cores", "2", "--forcerun", metrics)
    assert refused.returncode != 0
    log = (micro_copy / "results/logs/metrics/micro/github/ga/n2/lr0.001/s0.log").read_text()
    assert capture in log and f"--forcerun {capture}" in log
    rebuilt = run_snakemake(micro_copy, "--cores", "2", "--forcerun", capture)
    assert rebuilt.returncode == 0, rebuilt.stderr[-3000:]
    assert read_json(micro_copy / metrics) == before


def test_a_diverging_cell_ends_collapsed_with_every_artifact_and_figure(micro_copy):
    config = yaml.safe_load((micro_copy / "config.yaml").read_text())
    config["grid"] = [config["grid"], {"methods": ["ga"], "n_requests": [2], "learning_rates": [1e5]}]
    (micro_copy / "config.yaml").write_text(yaml.safe_dump(config))
    result = run_snakemake(micro_copy, "--cores", "2")
    assert result.returncode == 0, result.stderr[-3000:]
    cell = "micro/github/ga/n2/lr100000/s0"
    for stage in ("unlearned", "relearned"):
        assert read_json(micro_copy / f"results/metrics/{cell}/{stage}.json")["collapsed"] is True
        assert read_json(micro_copy / f"results/diagnostics/{cell}/{stage}.json")
    assert read_json(micro_copy / f"results/metrics/{cell}/reversal.json")["collapsed"] is True
    rows = [r for r in read_csv(micro_copy / "results/tables/metrics.csv") if r["learning_rate"] == "100000"]
    assert {r["stage"]: r["collapsed"] for r in rows} == {"base": "False", "unlearned": "True", "relearned": "True"}
    for figure in per_experiment(needs_benchmarks=False):
        assert (micro_copy / f"results/figures/micro/github/{figure.name}.png").stat().st_size > 0
