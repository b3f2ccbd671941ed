"""The micro workflow dispatched to a real Slurm cluster on this machine (tests/slurm/cluster.sh
starts it: slurmctld, slurmd with two fake GPUs, slurmdbd on MariaDB so that sacct works)."""

import os
import subprocess
import time

import pytest
import yaml
from conftest import MICRO_CONFIG, REPO, run_snakemake

pytestmark = [pytest.mark.slow, pytest.mark.slurm]

CLUSTER = REPO / "tests/slurm/cluster.sh"
EVIDENCE = REPO / "results/slurm-sacct.txt"


@pytest.fixture(scope="module")
def cluster():
    if os.geteuid() != 0:
        pytest.skip("starting a Slurm cluster needs root")
    started = subprocess.run(["bash", str(CLUSTER), "start"], capture_output=True, text=True)
    if started.returncode != 0:
        subprocess.run(["bash", str(CLUSTER), "stop"], capture_output=True)
        pytest.fail(f"the Slurm cluster did not start:\n{started.stdout[-3000:]}\n{started.stderr[-3000:]}")
    yield
    subprocess.run(["bash", str(CLUSTER), "stop"], capture_output=True)


def sacct(since: str) -> list[dict]:
    columns = ["JobID", "JobName", "Comment", "ReqTRES", "State"]
    out = subprocess.run(
        ["sacct", "-n", "-P", "-X", "-S", since, f"--format={','.join(columns)}%300"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return [dict(zip(columns, line.split("|"))) for line in out.splitlines() if line.strip()]


def test_the_micro_workflow_runs_as_slurm_jobs_and_a_rerun_submits_nothing(cluster, tmp_path):
    config = yaml.safe_load(MICRO_CONFIG.read_text())
    # Training jobs sharded over the node's two (fake) GPUs, as two CPU processes here.
    config["models"]["micro"].update(
        resources={"gpu": 2, "mem_mb": 2000, "runtime": 30}, threads=2, sharding={"enabled": True}
    )
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    since = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(time.time() - 1))
    command = [
        "--profile",
        str(REPO / "profiles/slurm"),
        "--default-resources",
        "slurm_account=default",
        "slurm_partition=debug",
        "--slurm-init-seconds-before-status-checks",
        "2",
    ]
    first = run_snakemake(tmp_path, *command)
    jobs = sacct(since)
    EVIDENCE.parent.mkdir(exist_ok=True)
    EVIDENCE.write_text("".join(f"{j['JobID']}  {j['State']:<10} {j['ReqTRES']:<40} {j['Comment']}\n" for j in jobs))
    assert first.returncode == 0, first.stderr[-4000:]

    # The plugin's comment names the rule and its wildcards; a group job, the group and its rules.
    rules = {j["Comment"].split("_wildcards_")[0].removeprefix("rule_"): j for j in jobs}
    assert {"prepare_data", "base_model", "capture_base", "metrics_base"} <= set(rules), jobs
    assert "tables" not in rules and "figures" not in rules  # local rules
    assert all(j["State"] == "COMPLETED" for j in jobs), jobs
    cells = [j for j in jobs if j["Comment"].startswith("rule_cell_")]
    assert len(cells) == 2, jobs  # one Slurm job per grid cell: unlearn, relearn, metrics
    assert all(rule in cells[0]["Comment"] for rule in ("unlearn", "relearn", "metrics", "diagnostics"))
    for job in (rules["base_model"], *cells):
        assert "gres/gpu=2" in job["ReqTRES"] and "cpu=2" in job["ReqTRES"], job  # --gpus from the model spec
    assert "gres/gpu=1" in rules["capture_base"]["ReqTRES"]  # a capture runs in one process
    base_log = (tmp_path / "results/logs/base_model/micro/github/s0.log").read_text()
    assert "sharded over 2 processes" in base_log
    for rule in ("prepare_data", "metrics_base"):
        assert "gres/gpu" not in rules[rule]["ReqTRES"], rules[rule]
    assert (tmp_path / "results/tables/metrics.csv").exists()

    second = run_snakemake(tmp_path, *command)
    assert second.returncode == 0, second.stderr[-4000:]
    assert "Nothing to be done" in second.stdout + second.stderr
    assert len(sacct(since)) == len(jobs)
