"""Shared fixtures: a micro model for unit tests and one real run of the micro workflow."""

from __future__ import annotations

import copy
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
SNAKEFILE = REPO / "Snakefile"
MICRO_CONFIG = REPO / "configs" / "test.yaml"


def load_micro_config() -> dict:
    return yaml.safe_load(MICRO_CONFIG.read_text())


def run_snakemake(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    """The command a user runs, from `workdir`, with the workflow of this checkout."""
    return subprocess.run(
        [sys.executable, "-m", "snakemake", "--snakefile", str(SNAKEFILE), *args],
        cwd=workdir,
        capture_output=True,
        text=True,
    )


def plan(workdir: Path, config: dict, jobs: list | None = None, inputs: list | None = None) -> list[str]:
    """The outputs a dry run of `config` in `workdir` would (re)build, through the Snakemake API.

    With `jobs`, the planned jobs are appended to it as (rule name, resources) pairs; with
    `inputs`, as (rule name, set of declared input paths) pairs.
    """
    from snakemake.api import SnakemakeApi
    from snakemake.settings.types import ConfigSettings, OutputSettings, Quietness, ResourceSettings

    configfile = workdir / "planned-config.yaml"
    configfile.write_text(yaml.safe_dump(config))
    updated: list[str] = []
    with SnakemakeApi(OutputSettings(quiet={Quietness.ALL})) as api:
        workflow = api.workflow(
            resource_settings=ResourceSettings(cores=1),
            config_settings=ConfigSettings(configfiles=[configfile]),
            snakefile=SNAKEFILE,
            workdir=workdir,
        )
        dag = workflow.dag()
        dag.execute_workflow(executor="dryrun", updated_files=updated)
        # The planned jobs themselves are not part of the public API; the DAG holds them.
        for job in workflow._workflow.dag.jobs:
            if jobs is not None:
                jobs.append((job.rule.name, dict(job.resources.items())))
            if inputs is not None:
                inputs.append((job.rule.name, set(map(str, job.input))))
    return sorted(updated)


@pytest.fixture(scope="session")
def micro_run(tmp_path_factory) -> Path:
    """A working directory in which the whole micro workflow has run once (about a minute)."""
    workdir = tmp_path_factory.mktemp("micro-run")
    shutil.copy(MICRO_CONFIG, workdir / "config.yaml")
    result = run_snakemake(workdir, "--cores", "2")
    if result.returncode != 0:
        pytest.fail(f"micro workflow failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}")
    return workdir


@pytest.fixture
def micro_copy(micro_run, tmp_path) -> Path:
    """A private copy of the finished micro run (mtimes and Snakemake's metadata kept)."""
    target = tmp_path / "run"
    shutil.copytree(micro_run, target, symlinks=True)
    return target


@pytest.fixture
def micro_config() -> dict:
    return copy.deepcopy(load_micro_config())


@pytest.fixture(scope="session")
def tiny_tokenizer():
    from reversibility.tokenization import train_bpe

    corpus = [(REPO / "reversibility" / name).read_text() for name in ("data.py", "training.py", "methods.py")]
    return train_bpe(corpus, vocab_size=300)


@pytest.fixture(scope="session")
def bosless_tokenizer(tiny_tokenizer):
    """The same vocabulary without a BOS token, as Qwen2.5's tokenizer has none."""
    from transformers import PreTrainedTokenizerFast

    from reversibility.tokenization import EOS, PAD

    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tiny_tokenizer.backend_tokenizer, eos_token=EOS, pad_token=PAD)
    assert tokenizer.bos_token_id is None
    return tokenizer


@pytest.fixture
def tiny_model(tiny_tokenizer):
    from reversibility.models import build_scratch_model

    spec = {
        "architecture": "llama",
        "hidden_size": 16,
        "intermediate_size": 32,
        "num_layers": 2,
        "num_heads": 2,
        "max_length": 32,
    }
    return build_scratch_model(spec, tiny_tokenizer, seed=0).eval()


@pytest.fixture
def cuda() -> str:
    """The GPU, for tests that compare it with the CPU; skipped where there is none (as in CI)."""
    import torch

    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    return "cuda"


@pytest.fixture(params=["cpu", "cuda"])
def device(request) -> str:
    """Each device a test should hold on; CUDA only where there is a GPU."""
    return request.getfixturevalue("cuda") if request.param == "cuda" else request.param
