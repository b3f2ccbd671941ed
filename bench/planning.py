"""How planning scales with the grid: the paper's grid and larger ones, planned by Snakemake's dry
run (through its API, as `snakemake -n` does), and a complete results tree of the paper's grid,
which must plan nothing.

Prints, per grid: cells, jobs planned, planning seconds, and seconds per thousand jobs (flat
when planning grows linearly with jobs). The larger grids multiply the paper's by adding
learning rates and numbers of requests.

    .venv/bin/python bench/planning.py
"""

from __future__ import annotations

import copy
import os
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
SNAKEFILE = REPO / "Snakefile"


def scaled(paper: dict, factor: int) -> dict:
    """The paper's config with about `factor` times its cells (more learning rates, then more N)."""
    config = copy.deepcopy(paper)
    if factor == 1:
        return config
    for block in config["grid"]:
        rates = block["learning_rates"]
        block["learning_rates"] = [round(lr * (1 + k / 10), 12) for k in range(factor) for lr in rates]
    return config


def plan(workdir: Path, config: dict) -> tuple[list[list], int, float]:
    """Every job of the DAG, level by level in dependency order; how many of them need to run;
    and the seconds the planning took (DAG construction and the dry run itself)."""
    from snakemake.api import SnakemakeApi
    from snakemake.settings.types import ConfigSettings, OutputSettings, Quietness, ResourceSettings

    configfile = workdir / "config.yaml"
    configfile.write_text(yaml.safe_dump(config))
    start = time.perf_counter()
    with SnakemakeApi(OutputSettings(quiet={Quietness.ALL})) as api:
        workflow = api.workflow(
            resource_settings=ResourceSettings(cores=1),
            config_settings=ConfigSettings(configfiles=[configfile]),
            snakefile=SNAKEFILE,
            workdir=workdir,
        )
        dag = workflow.dag()
        dag.execute_workflow(executor="dryrun")
        seconds = time.perf_counter() - start
        graph = workflow._workflow.dag
        levels = [list(level) for level in graph.toposorted()]
        planned = sum(1 for level in levels for job in level if graph.needrun(job))
    return levels, planned, seconds


def complete_tree(workdir: Path, levels: list[list]) -> None:
    """Create every planned output, each level a second newer than the one it depends on."""
    from snakemake.io import is_flagged

    stamp = time.time() - len(levels) - 10
    for level in levels:
        stamp += 1
        for job in level:
            for output in job.output:
                path = workdir / output
                if is_flagged(output, "directory"):
                    path.mkdir(parents=True, exist_ok=True)
                else:
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.touch()
                os.utime(path, (stamp, stamp))


def main() -> None:
    paper = yaml.safe_load((REPO / "configs/paper.yaml").read_text())
    print(f"{'grid':>12} {'cells':>7} {'jobs':>7} {'plan s':>8} {'s / 1000 jobs':>14}")
    from reversibility.config import cells

    rows = []
    for factor in (1, 3, 10):
        config = scaled(paper, factor)
        with tempfile.TemporaryDirectory() as tmp:
            _, jobs, seconds = plan(Path(tmp), config)
        n_cells = len(list(cells(config)))
        rows.append((factor, n_cells, jobs, seconds))
        print(
            f"{f'paper x{factor}':>12} {n_cells:>7} {jobs:>7} {seconds:>8.1f} {1000 * seconds / jobs:>14.2f}",
            flush=True,
        )
    growth = (rows[-1][3] / rows[-1][2]) / (rows[0][3] / rows[0][2])
    print(f"cost per job, x10 grid against the paper's: {growth:.2f} (1.0 = linear)")

    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        levels, _, _ = plan(workdir, paper)
        complete_tree(workdir, levels)
        _, remaining, seconds = plan(workdir, paper)
        print(f"complete results tree of the paper grid: {remaining} jobs planned in {seconds:.1f} s")


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    main()
