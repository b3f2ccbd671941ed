"""A micro cell's training stages on a GPU, and FSDP2 on a GPU against the plain model.

Checks, on whatever device torch picks (CUDA where there is one):
1. unlearning (NPO+KL, with a reference, retain batches and gradient accumulation) and
   relearning (controls, quantization probe, captures) of the micro model under the model
   spec's precision (bf16 autocast over float32 weights on a GPU): every loss finite, the
   precision recorded, and, with --against, each step's loss next to a float32 CPU run's;
2. six training steps of the micro model wrapped by `fully_shard` over a one-process group (NCCL
   on a GPU: DTensor weights, the fused AdamW on them, the gathered state dict) against the same
   steps unwrapped: the largest weight and loss differences.

A GPU machine needs no Snakemake: `--prepare FOLDER` (here, with the workflow installed) runs
the micro config's data and base model into FOLDER and writes the stages' settings beside them;
the check then reads only FOLDER.

    python bench/gpu_check.py --prepare gpucheck                # here
    python bench/gpu_check.py gpucheck --out cpu-run            # a float32 CPU reference
    python bench/gpu_check.py gpucheck --against cpu-run        # on the GPU machine
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import subprocess
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from reversibility import sharding  # noqa: E402
from reversibility.methods import METHODS  # noqa: E402
from reversibility.stages import relearn, unlearn  # noqa: E402

CELL = "micro/github/npo_kl/n2/lr0.001"
SECTIONS = ("unlearning", "relearning", "quantization", "curves", "capture")


def prepare(folder: Path) -> None:
    """The micro config's data and base model, and the schema's settings of the stages."""
    import yaml
    from snakemake.utils import validate

    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / "configs/test.yaml", folder / "config.yaml")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "snakemake",
            "--snakefile",
            str(REPO / "Snakefile"),
            "--cores",
            "2",
            "results/models/micro/github/base",
        ],
        cwd=folder,
        check=True,
    )
    config = yaml.safe_load((folder / "config.yaml").read_text())
    validate(config, str(REPO / "workflow/schemas/config.schema.yaml"))
    (folder / "settings.json").write_text(json.dumps({name: config[name] for name in SECTIONS}, indent=1))


def cell(folder: Path, out: Path, dtype: str, against: Path | None, report: dict) -> None:
    settings = json.loads((folder / "settings.json").read_text())
    data, shared = folder / "results/data/github", dict(max_length=64, dtype=dtype, seed=0, cell=CELL, threads=4)
    unlearning = {**settings["unlearning"], "grad_accumulation": 2, "retain_batch_size": 1}
    start = time.time()
    unlearn.unlearn(
        base_dir=folder / "results/models/micro/github/base",
        data_dir=data,
        out_dir=out / "unlearned",
        curve_path=out / "requests.json",
        baseline_data_dir=data,
        method="npo_kl",
        hyperparameters=dict(METHODS["npo_kl"].defaults),
        n_requests=2,
        learning_rate=1e-3,
        unlearning=unlearning,
        baseline=None,
        curves=settings["curves"],
        lora={"enabled": False},
        **shared,
    )
    report["unlearn_s"] = round(time.time() - start, 1)
    start = time.time()
    relearn.relearn(
        unlearned_dir=out / "unlearned",
        data_dir=data,
        out_dir=out / "relearned",
        source_data_dir=data,
        captures={stage: out / f"{stage}.h5" for stage in ("unlearned", "relearned")},
        curve_path=out / "relearning.json",
        reversal_path=out / "reversal.json",
        n_requests=2,
        relearning=settings["relearning"],
        quantization=settings["quantization"],
        curves=settings["curves"],
        capture_config=settings["capture"],
        **shared,
    )
    report["relearn_s"] = round(time.time() - start, 1)
    for stage in ("unlearned", "relearned"):
        record = json.loads((out / stage / "provenance.json").read_text())
        steps = record["training"]
        entry = {
            "precision": record["precision"],
            "collapsed": record["collapsed"],
            "steps": len(steps),
            "losses_finite": all(math.isfinite(s["loss"]) for s in steps),
            "first_last_loss": [steps[0]["loss"], steps[-1]["loss"]],
        }
        if against is not None:
            reference = json.loads((against / stage / "provenance.json").read_text())["training"]
            entry["max_loss_difference_to_reference"] = max(
                abs(a["loss"] - b["loss"]) for a, b in zip(steps, reference)
            )
        report[stage] = entry
    report["forget_gains"] = [b["forget_gain"] for b in json.loads((out / "reversal.json").read_text())["budgets"]]


def fsdp_on_one_process(folder: Path, dtype: str, report: dict) -> None:
    import torch.distributed as dist
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    from reversibility.models import load_checkpoint, pick_device
    from reversibility.precision import Precision
    from reversibility.tokenization import encode
    from reversibility.training import OptimSettings
    from reversibility.unlearning import finetune

    device = pick_device()
    dist.init_process_group(
        "nccl" if device.type == "cuda" else "gloo", init_method="tcp://127.0.0.1:29533", rank=0, world_size=1
    )
    try:
        lines = (folder / "results/data/github/forget.jsonl").read_text().splitlines()
        texts = [json.loads(line)["text"] for line in lines]
        runs = {}
        for name in ("plain", "sharded"):
            model, tokenizer = load_checkpoint(folder / "results/models/micro/github/base", device)
            if name == "sharded":
                mesh = init_device_mesh(device.type, (1,))
                for layer in sharding.decoder_layers(model):
                    fully_shard(layer, mesh=mesh)
                fully_shard(model, mesh=mesh, reshard_after_forward=True)
                report["sharded_weights"] = type(next(model.parameters())).__name__
            record = finetune(
                model,
                encode(tokenizer, texts, 64),
                6,
                4,
                OptimSettings(learning_rate=1e-3, grad_accumulation=2),
                tokenizer.pad_token_id,
                0,
                precision=Precision.of(dtype, device),
            )
            state = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
            runs[name] = state, [step["loss"] for step in record.steps]
        (plain, plain_losses), (sharded, sharded_losses) = runs["plain"], runs["sharded"]
        report["fsdp_max_weight_difference"] = max((plain[k] - sharded[k]).abs().max().item() for k in plain)
        report["fsdp_max_loss_difference"] = max(abs(a - b) for a, b in zip(plain_losses, sharded_losses))
    finally:
        dist.destroy_process_group()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--prepare", action="store_true", help="run the micro data and base model into FOLDER")
    parser.add_argument("--out", type=Path, default=Path("gpu-check-out"))
    parser.add_argument("--against", type=Path, help="a float32 CPU run's --out to compare each loss with")
    parser.add_argument("--dtype", default="bfloat16")
    args = parser.parse_args()
    if args.prepare:
        prepare(args.folder)
        return
    report = {
        "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
        "torch": torch.__version__,
    }
    cell(args.folder, args.out, args.dtype, args.against, report)
    fsdp_on_one_process(args.folder, args.dtype, report)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gpu_check.json").write_text(json.dumps(report, indent=1))
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
