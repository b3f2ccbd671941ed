"""The conda environments pin exactly the versions that pyproject.toml pins."""

import re
from pathlib import Path

import pytest
import tomllib
import yaml

REPO = Path(__file__).resolve().parents[1]
PIN = re.compile(r"^([A-Za-z0-9_.-]+)==([^\s;]+)$")


def pins(requirements) -> dict[str, str]:
    found = {}
    for line in requirements:
        match = PIN.match(line.strip())
        if match:
            found[match.group(1).lower().replace("_", "-")] = match.group(2)
    return found


def project_pins() -> dict[str, str]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    return pins(project["dependencies"])


def test_every_project_dependency_is_pinned_exactly():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert len(project_pins()) == len(project["dependencies"])
    assert project_pins()["torch"] == "2.13.0"
    assert project_pins()["snakemake"].startswith("9.")


@pytest.mark.parametrize("env", sorted(p.name for p in (REPO / "envs").glob("*.yaml")))
def test_conda_environment_pins_agree_with_pyproject(env):
    spec = yaml.safe_load((REPO / "envs" / env).read_text())
    pip_section = next(d["pip"] for d in spec["dependencies"] if isinstance(d, dict) and "pip" in d)
    assert pins(pip_section) == project_pins()


def test_every_rule_names_an_environment_that_exists():
    for smk in (REPO / "workflow" / "rules").glob("*.smk"):
        for ref in re.findall(r'"(\.\./\.\./envs/[^"]+)"', smk.read_text()):
            assert (smk.parent / ref).resolve().exists(), f"{smk.name}: {ref}"


def test_the_makefile_installs_the_smollm2_weights_at_the_pinned_version():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    pinned = pins(project["optional-dependencies"]["smollm2"])
    makefile = (REPO / "Makefile").read_text()
    assert [f"{name}=={version}" for name, version in pinned.items()] == re.findall(r"SMOLLM2 = (\S+)", makefile)
