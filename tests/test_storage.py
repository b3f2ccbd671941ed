"""results/ in an S3 bucket (Snakemake's storage plugin), against a local S3-compatible server
(moto's server mode on loopback): nothing is read from or left in a local results/ tree."""

import csv
import io
import re
import shutil
import socket
import subprocess
import sys
import time

import pytest
import yaml
from conftest import MICRO_CONFIG, plan, run_snakemake

from reversibility.config import Cell
from reversibility.data import SPLITS
from reversibility.layout import local_results

BUCKET = "reversibility-results"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def s3_endpoint():
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.2)
        else:
            pytest.fail("the local S3 server did not start")
        yield endpoint
    finally:
        server.terminate()
        server.wait(timeout=30)


def bucket(endpoint: str):
    import boto3

    s3 = boto3.resource(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    return s3.Bucket(BUCKET)


def read_object(store, key: str) -> str:
    return store.Object(key).get()["Body"].read().decode()


def test_the_tables_job_finds_its_inputs_where_they_were_fetched():
    cell = Cell(model="m", dataset="d", method="ga", n_requests=2, learning_rate=0.001)
    fetched = ".snakemake/storage/s3/bucket/prefix/results"
    others = [f"{fetched}/metrics/m/d/ga/n2/lr0.001/s0/unlearned.json"]
    assert local_results([*others, f"{fetched}/metrics/m/d/s0/base/n2.json"], cell) == fetched
    assert local_results(["results/metrics/m/d/s0/base/n2.json"], cell) == "results"
    with pytest.raises(ValueError, match="base/n2.json is not among"):
        local_results(others, cell)


def test_a_job_that_reads_a_dataset_declares_every_split_file_of_it(tmp_path, micro_config):
    # Relearning and the baseline on another dataset: their split files must be inputs too.
    micro_config["datasets"]["other"] = dict(micro_config["datasets"]["github"])
    micro_config["relearning"]["source_dataset"] = "other"
    micro_config["baseline"] = {"source_dataset": "other"}
    micro_config["grid"]["methods"] = ["ga", "finetune"]
    micro_config["models"]["micro"]["lora"] = {"enabled": True}
    jobs = []
    plan(tmp_path, micro_config, inputs=jobs)
    read = {}
    for rule, inputs in jobs:
        for manifest in (path for path in inputs if path.endswith("/manifest.json")):
            folder = manifest.removesuffix("manifest.json")
            assert {f"{folder}{split}.jsonl" for split in SPLITS} <= inputs, (rule, sorted(inputs))
            read.setdefault(rule, set()).add(folder)
    assert read["relearn"] == {"results/data/github/", "results/data/other/"}
    assert read["unlearn"] == {"results/data/github/", "results/data/other/"}
    relearn = next(inputs for rule, inputs in jobs if rule == "relearn")
    assert "results/models/micro/github/s0/base" in relearn  # LoRA adapters need their base


def test_a_dataset_file_of_the_config_is_a_local_input_of_its_split(tmp_path, micro_config):
    rows = tmp_path / "rows.jsonl"
    rows.write_text('{"problem": "1 + 1?", "solution": "2"}\n')
    micro_config["datasets"]["github"].update(source="json", files=[str(rows)], text="{problem} {solution}")
    jobs = []
    plan(tmp_path, micro_config, inputs=jobs)
    assert str(rows) in next(inputs for rule, inputs in jobs if rule == "prepare_data")


@pytest.mark.slow
def test_the_micro_workflow_keeps_its_artifacts_in_a_bucket_and_a_rerun_plans_nothing(s3_endpoint, tmp_path):
    config = yaml.safe_load(MICRO_CONFIG.read_text())
    # LoRA cells save adapters only: relearning must fetch the base checkpoint they adapt.
    config["models"]["micro"]["lora"] = {"enabled": True, "rank": 4, "alpha": 8, "target_modules": ["q_proj", "v_proj"]}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    store = bucket(s3_endpoint)
    store.create()
    storage = [
        "--default-storage-provider",
        "s3",
        "--default-storage-prefix",
        f"s3://{BUCKET}",
        "--storage-s3-endpoint-url",
        s3_endpoint,
        "--storage-s3-access-key",
        "testing",
        "--storage-s3-secret-key",
        "testing",
    ]

    first = run_snakemake(tmp_path, "--cores", "2", *storage)
    assert first.returncode == 0, first.stderr[-4000:]

    keys = {obj.key for obj in store.objects.all()}
    cell = "micro/github/ga/n2/lr0.001/s0"
    for artifact in (
        "results/tables/metrics.csv",
        "results/tables/recovery.csv",
        "results/figures/micro/github/cka_per_layer.png",
        "results/data/github/forget.jsonl",
        f"results/activations/{cell}/relearned.h5",
        f"results/metrics/{cell}/reversal.json",
        f"results/runs/{cell}/unlearned/adapter_model.safetensors",
        "results/models/micro/github/s0/base/model.safetensors",
    ):
        assert artifact in keys, sorted(keys)
    # Nothing in a local results/ tree, and no local copy of a checkpoint or capture left behind.
    assert not (tmp_path / "results").exists()
    leftovers = [p for p in (tmp_path / ".snakemake").rglob("*") if p.suffix in (".safetensors", ".h5")]
    assert not leftovers, leftovers

    # The tables were built from the per-cell files fetched out of the bucket: every cell, every stage.
    tables = read_object(store, "results/tables/metrics.csv")
    metrics = list(csv.DictReader(io.StringIO(tables)))
    cells = {(row["learning_rate"], row["stage"]) for row in metrics}
    assert cells == {(lr, stage) for lr in ("0.001", "0.003") for stage in ("base", "unlearned", "relearned")}
    assert all(row["forget_accuracy"] not in ("", "nan") for row in metrics)

    second = run_snakemake(tmp_path, "--cores", "2", *storage)
    assert second.returncode == 0, second.stderr[-4000:]
    assert "Nothing to be done" in second.stdout + second.stderr

    # As on a fresh node, with no local copy of anything: one cell's relearn job, forced, must
    # fetch the base checkpoint its adapters are loaded onto, and gives the same results.
    shutil.rmtree(tmp_path / ".snakemake" / "storage")
    third = run_snakemake(tmp_path, "--cores", "2", *storage, "--forcerun", f"results/runs/{cell}/relearned")
    assert third.returncode == 0, third.stderr[-4000:]
    assert re.search(r"^relearn\s+1$", third.stdout + third.stderr, re.MULTILINE), third.stdout[-3000:]
    assert read_object(store, "results/tables/metrics.csv") == tables, "the rerun changed the results"
