"""The whole workflow on the micro config: real outputs, real properties, incremental reruns."""

import json
import os
import subprocess
import sys
import time

import pytest
import yaml
from browser import Page, find_browser
from conftest import REPO, plan, run_snakemake

from reversibility.activations import Capture
from reversibility.io import read_json
from reversibility.representations import linear_cka
from reversibility.tables import read_csv

pytestmark = pytest.mark.slow

CELL_RULE_OUTPUTS = {"runs", "activations", "metrics", "diagnostics"}
LAYERS = ["model.embed_tokens", "model.layers.0", "model.layers.1", "model.norm"]


def rows(workdir, stage=None):
    table = read_csv(workdir / "results/tables/metrics.csv")
    return [r for r in table if stage is None or r["stage"] == stage]


def test_base_model_has_learned_its_forget_set(micro_run):
    for row in rows(micro_run, "base"):
        assert float(row["forget_accuracy"]) > float(row["holdout_accuracy"]) + 0.1
        assert float(row["mia_loss_auc"]) > 0.8


def test_gradient_ascent_lowers_forget_accuracy_and_relearning_raises_it(micro_run):
    table = rows(micro_run)
    for lr in {r["learning_rate"] for r in table}:
        acc = {r["stage"]: float(r["forget_accuracy"]) for r in table if r["learning_rate"] == lr}
        assert acc["unlearned"] < acc["base"] - 0.1, lr
        assert acc["relearned"] > acc["unlearned"], lr


def test_cka_of_the_base_against_itself_is_one(micro_run):
    with Capture(micro_run / "results/activations/micro/github/s0/base.h5") as base:
        for layer in range(len(base.layers)):
            x = base.features("forget", layer)
            assert linear_cka(x, x) == pytest.approx(1.0)


def test_representation_table_has_every_layer_of_every_cell_and_stage(micro_run):
    table = read_csv(micro_run / "results/tables/representations.csv")
    keys = {(r["learning_rate"], r["stage"], r["split"]) for r in table}
    assert len(keys) == 2 * 2 * 5  # forget, retain, holdout, all, and the common samples
    assert all(len([r for r in table if (r["learning_rate"], r["stage"], r["split"]) == k]) == 4 for k in keys)
    for row in table:
        assert 0.0 <= float(row["cka"]) <= 1.0 + 1e-9 and 0.0 <= float(row["pc1_cosine"]) <= 1.0 + 1e-9
        assert float(row["distance"]) >= 0.0


def test_the_logit_lens_table_has_every_layer_stage_and_split_of_every_cell(micro_run):
    table = read_csv(micro_run / "results/tables/logit_lens.csv")
    keys = {(r["learning_rate"], r["stage"], r["split"]) for r in table}
    assert len(keys) == 2 * 3 * 2  # two cells; base, unlearned, relearned; forget and holdout (not retain)
    assert all([r["layer"] for r in table if (r["learning_rate"], r["stage"], r["split"]) == k] == LAYERS for k in keys)
    assert all(0.0 <= float(r["accuracy"]) <= 1.0 and float(r["mean_logprob"]) <= 0.0 for r in table)
    # The final norm's readout is the model's own output: its forget accuracy is the metrics' F.Acc.
    metrics = {(r["learning_rate"], r["stage"]): float(r["forget_accuracy"]) for r in rows(micro_run)}
    for r in table:
        if r["layer"] == "model.norm" and r["split"] == "forget":
            assert float(r["accuracy"]) == pytest.approx(metrics[(r["learning_rate"], r["stage"])], abs=1e-6)


def test_fisher_is_measured_for_every_decoder_layer(micro_run):
    fisher = read_csv(micro_run / "results/tables/fisher.csv")
    assert {r["layer"] for r in fisher} == {"model.layers.0", "model.layers.1"}
    assert all(float(r["mass_base"]) > 0 and float(r["mass"]) > 0 for r in fisher)
    histograms = read_csv(micro_run / "results/tables/fisher_histograms.csv")
    assert {r["stage"] for r in histograms} == {"base", "unlearned", "relearned"}


def test_membership_probe_table_has_every_layer_of_every_stage_beside_the_output_mia(micro_run):
    table = read_csv(micro_run / "results/tables/membership_probe.csv")
    assert sorted({(r["stage"], r["learning_rate"]) for r in table}) == [
        ("base", ""),
        ("relearned", "0.001"),
        ("relearned", "0.003"),
        ("unlearned", "0.001"),
        ("unlearned", "0.003"),
    ]
    assert len(table) == 5 * 4  # four captured layers each
    metrics = {(r["stage"], r["learning_rate"]): r["mia_loss_auc"] for r in rows(micro_run)}
    for row in table:
        assert row["pooling"] == "mean" and row["samples_per_class"] == "8" and row["folds"] == "5"
        assert 0.0 <= float(row["probe_auc"]) <= 1.0
        lr = row["learning_rate"] or "0.001"  # the base model's metrics are the same in every cell
        assert row["output_mia_loss_auc"] == metrics[row["stage"], lr]


def test_metrics_follow_their_documented_schema(micro_run):
    import jsonschema
    import yaml

    schema = yaml.safe_load((REPO / "workflow/schemas/metrics.schema.yaml").read_text())
    files = list((micro_run / "results/metrics").rglob("*.json"))
    stages = [
        f
        for f in files
        if not f.name.endswith(".meta.json")
        and f.stem in ("unlearned", "relearned")
        or f.parent.name == "base"
        and not f.name.endswith(".meta.json")
    ]
    assert len(stages) == 5
    for path in stages:
        jsonschema.validate(json.loads(path.read_text()), schema)


def test_regimes_are_assigned_to_every_cell(micro_run):
    regimes = read_csv(micro_run / "results/tables/regimes.csv")
    assert len(regimes) == 2 and all(r["regime_paper"] and r["regime_controlled"] for r in regimes)
    single = (micro_run / "results/tables/single_unlearning.tex").read_text()
    assert "\\begin{tabular}" in single


def test_artifacts_carry_provenance(micro_run):
    checkpoint = json.loads((micro_run / "results/models/micro/github/s0/base/provenance.json").read_text())
    assert checkpoint["params"]["seed"] == 0 and len(checkpoint["sha256"]) == 64
    assert "torch" in checkpoint["versions"]
    meta = json.loads(
        (micro_run / "results/metrics/micro/github/ga/n2/lr0.001/s0/unlearned.json.meta.json").read_text()
    )
    assert meta["inputs"]["capture"]["sha256"]
    assert not list((micro_run / "results").rglob("*.bin")) and not list((micro_run / "results").rglob("*.pt"))


def test_every_figure_kind_is_drawn(micro_run):
    from reversibility.figures import per_experiment

    for name in (figure.name for figure in per_experiment(needs_benchmarks=False)):
        png = (micro_run / f"results/figures/micro/github/{name}.png").read_bytes()
        pdf = (micro_run / f"results/figures/micro/github/{name}.pdf").read_bytes()
        assert png.startswith(b"\x89PNG") and pdf.startswith(b"%PDF"), name


def test_report_holds_the_figures_and_shows_them_in_a_browser(micro_copy):
    """The report opens in headless Chromium without console errors, lists every figure under
    its category and displays one; the screenshot is kept as results/report-screenshot.png."""
    from reversibility.figures import per_experiment

    categories = {figure.name: figure.category for figure in per_experiment(needs_benchmarks=False)}

    result = run_snakemake(micro_copy, "--report", "results/report.html")
    assert result.returncode == 0, result.stderr[-3000:]
    html = (micro_copy / "results/report.html").read_text()
    assert all(f"{name}.png" in html for name in categories) and "metrics.csv" in html

    browser = find_browser()
    if browser is None:
        if os.environ.get("REVERSIBILITY_REQUIRE_BROWSER"):
            pytest.fail("no Chromium on PATH (install Debian's `chromium`)")
        pytest.skip("no Chromium on PATH")
    report = (micro_copy / "results/report.html").as_uri()
    with Page(browser) as page:
        for category in sorted(set(categories.values())) + ["Reversal"]:  # Reversal last: shown below
            page.open(report, ready="Token metrics")
            page.evaluate(f"""Array.from(document.querySelectorAll("a, li, div, span"))
                              .filter(e => e.innerText === {json.dumps(category)}).pop().click()""")
            listed = page.text()
            for name, kind in categories.items():
                if kind == category:
                    # Listed by its labels (model, dataset, figure), so that the report can be filtered.
                    assert f"micro\tgithub\t{name}\t" in listed, (category, name)
        page.evaluate("""Array.from(document.querySelectorAll("tr"))
                         .find(row => row.innerText.includes("prediction_scatter"))
                         .querySelector("a[iconname=eye]").click()""")
        deadline = time.monotonic() + 30
        shown = "[]"
        while time.monotonic() < deadline:
            shown = page.evaluate(
                "JSON.stringify(Array.from(document.images).filter(i => i.complete).map(i => i.naturalWidth))"
            )
            if any(width > 300 for width in json.loads(shown)):
                break
            time.sleep(0.2)
        assert any(width > 300 for width in json.loads(shown)), shown  # the figure, not an icon
        screenshot = page.screenshot(REPO / "results/report-screenshot.png")
        assert screenshot.read_bytes().startswith(b"\x89PNG")
        assert page.errors() == []


# ----------------------------------------------------------------------------- incremental reruns


def test_a_complete_results_tree_plans_nothing(micro_copy, micro_config):
    assert plan(micro_copy, micro_config) == []


def test_adding_a_learning_rate_plans_only_the_new_cell_and_the_aggregates(micro_copy, micro_config):
    micro_config["grid"]["learning_rates"].append(1e-2)
    planned = plan(micro_copy, micro_config)
    per_cell = [p for p in planned if p.split("/")[1] in CELL_RULE_OUTPUTS]
    assert per_cell and all("/lr0.01/" in p for p in per_cell)
    assert {p for p in planned if p not in per_cell} == aggregates()
    assert "results/runs/micro/github/ga/n2/lr0.01/s0/unlearned" in planned


def aggregates() -> set[str]:
    """The files of the tables and figures jobs: what every change of the grid rebuilds."""
    from reversibility.figures import per_experiment
    from reversibility.tables import TABLES, table_files

    return {
        *(f"results/tables/{file}" for name in TABLES for file in table_files(name).values()),
        *(f"results/figures/micro/github/{f.name}.{e}" for f in per_experiment(False) for e in ("png", "pdf")),
    }


def test_adding_a_seed_plans_only_that_seeds_jobs_and_the_aggregates(micro_copy, micro_config):
    micro_config["seeds"] = [0, 1]
    planned = plan(micro_copy, micro_config)
    replicate = {p for p in planned if "/s1/" in p}
    assert set(planned) - replicate == aggregates()
    # Its own base model (base_per_seed), captures and metrics, and both cells; the data is shared.
    assert {
        "results/models/micro/github/s1/base",
        "results/activations/micro/github/s1/base.h5",
        "results/metrics/micro/github/s1/base/n2.json",
        "results/runs/micro/github/ga/n2/lr0.001/s1/relearned",
        "results/runs/micro/github/ga/n2/lr0.003/s1/relearned",
    } <= replicate


def test_seeds_sharing_a_base_model_train_it_once(tmp_path, micro_config):
    micro_config.update(seeds=[0, 1, 2], base_per_seed=False)
    jobs = []
    planned = plan(tmp_path, micro_config, jobs=jobs)
    assert [name for name, _ in jobs].count("base_model") == 1
    assert [name for name, _ in jobs].count("unlearn") == 6
    assert "results/models/micro/github/shared/base" in planned
    assert not [
        p for p in planned if p.startswith(("results/models/micro/github/s0", "results/models/micro/github/s1"))
    ]


def test_a_second_seed_runs_beside_the_first_and_removing_it_rebuilds_only_the_aggregates(micro_copy, micro_config):
    first_seed = {p: p.stat().st_mtime_ns for p in (micro_copy / "results/runs").rglob("*") if p.is_file()}
    micro_config["seeds"] = [0, 1]
    (micro_copy / "config.yaml").write_text(yaml.safe_dump(micro_config))
    result = run_snakemake(micro_copy, "--cores", "2")
    assert result.returncode == 0, result.stderr[-3000:]
    assert {p: p.stat().st_mtime_ns for p in first_seed} == first_seed  # seed 0 untouched

    metrics = read_csv(micro_copy / "results/tables/metrics.csv")
    assert {(r["learning_rate"], r["stage"], r["seed"]) for r in metrics} == {
        (lr, stage, seed) for lr in ("0.001", "0.003") for stage in ("base", "unlearned", "relearned") for seed in "01"
    }
    base = {r["seed"]: r["forget_loss"] for r in metrics if r["stage"] == "base"}
    assert base["0"] != base["1"]  # a base model per seed, each from its own initialisation
    provenance = read_json(micro_copy / "results/models/micro/github/s1/base/provenance.json")
    assert (provenance["params"]["replicate"], provenance["params"]["seed"]) == ("s1", 1)
    summary = read_csv(micro_copy / "results/tables/metrics_over_seeds.csv")
    for row in (r for r in summary if r["measure"] == "forget_accuracy"):
        values = [
            float(r["forget_accuracy"])
            for r in metrics
            if (r["learning_rate"], r["stage"]) == (row["learning_rate"], row["stage"])
        ]
        assert row["seeds"] == "2" and float(row["mean"]) == pytest.approx(sum(values) / 2)
        assert float(row["low"]) <= min(values) and float(row["high"]) >= max(values)
    labels = [r["label"] for r in read_csv(micro_copy / "results/tables/regimes_agreement.csv")]
    assert labels and all(label.endswith(("1/2", "2/2")) for label in labels)
    figure = micro_copy / "results/figures/micro/github/accuracy_trajectory.png"
    assert figure.stat().st_size > 0

    micro_config["seeds"] = [0]
    assert set(plan(micro_copy, micro_config)) == aggregates()


def test_changing_the_relearning_rate_reruns_relearning_and_what_follows_but_no_unlearning(micro_copy, micro_config):
    micro_config["relearning"]["learning_rate"] = 1e-3
    planned = plan(micro_copy, micro_config)
    for lr in ("0.001", "0.003"):
        cell = f"micro/github/ga/n2/lr{lr}/s0"
        assert f"results/runs/{cell}/relearned" in planned
        assert f"results/metrics/{cell}/relearned.json" in planned
        assert f"results/diagnostics/{cell}/relearned.json" in planned
    assert not [p for p in planned if p.endswith("/unlearned")]
    assert not [p for p in planned if "/base" in p or p.startswith("results/data/")]


def test_adding_a_benchmark_reruns_the_captures_but_no_training(micro_copy, micro_config):
    (micro_copy / "gsm8k.jsonl").write_text('{"question": "What is 2 + 3?", "answer": "2 + 3 = 5\\n#### 5"}\n')
    micro_config["benchmarks"] = {"gsm8k": {"source": "json", "files": ["gsm8k.jsonl"], "max_new_tokens": 8}}
    micro_config["experiments"][0]["benchmarks"] = ["gsm8k"]
    planned = plan(micro_copy, micro_config)
    assert "results/benchmarks/gsm8k/problems.jsonl" in planned
    assert "results/activations/micro/github/s0/base.h5" in planned
    assert "results/figures/micro/github/benchmark_accuracy.png" in planned
    assert not [p for p in planned if p.endswith("/unlearned") or p.startswith("results/models/")]


def test_switching_gradient_checkpointing_plans_nothing(micro_copy, micro_config):
    micro_config["models"]["micro"]["gradient_checkpointing"] = True
    assert plan(micro_copy, micro_config) == []


SHARDED = {"threads": 2, "sharding": {"enabled": True, "processes": 2}}


def test_switching_sharding_plans_nothing(micro_copy, micro_config):
    micro_config["models"]["micro"].update(SHARDED)
    assert plan(micro_copy, micro_config) == []


def test_a_sharded_cell_runs_through_snakemake_to_the_weights_of_one_process(micro_copy, micro_config):
    """A cell's unlearning and relearning rerun as 2 processes each (FSDP2 on gloo)."""
    from safetensors.torch import load_file

    micro_config["models"]["micro"].update(SHARDED)
    (micro_copy / "config.yaml").write_text(yaml.safe_dump(micro_config))
    cell = "micro/github/ga/n2/lr0.001/s0"
    checkpoints = {stage: micro_copy / f"results/runs/{cell}/{stage}" for stage in ("unlearned", "relearned")}
    single = {stage: load_file(path / "model.safetensors") for stage, path in checkpoints.items()}
    result = run_snakemake(
        micro_copy, "--cores", "2", "--forcerun", "unlearn", "relearn", "--", f"results/metrics/{cell}/reversal.json"
    )
    assert result.returncode == 0, result.stderr[-3000:]
    log = (micro_copy / f"results/logs/unlearn/{cell}.log").read_text()
    assert "sharded over 2 processes" in log and "[process 0/2]" in log
    for stage, path in checkpoints.items():
        assert read_json(path / "provenance.json")["sharding"] == {"processes": 2}
        sharded = load_file(path / "model.safetensors")
        assert sharded.keys() == single[stage].keys()
        # Float32 sums in another order, through 20 Adam steps at lr 3e-3, differ by up to 1.6e-5 on
        # some CPUs; relearning itself moves a weight by 1e-2 (median |relearned - unlearned|).
        assert max((sharded[k] - single[stage][k]).abs().max().item() for k in sharded) < 1e-4, stage


def test_settings_of_a_method_outside_the_grid_plan_nothing(micro_copy, micro_config):
    micro_config["methods"] = {"npo": {"beta": 0.5}}
    assert plan(micro_copy, micro_config) == []


def test_lint_is_clean():
    result = subprocess.run([sys.executable, "-m", "snakemake", "--lint"], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0 and "Lints for" not in result.stdout + result.stderr, result.stdout
