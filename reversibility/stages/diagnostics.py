"""Stage `diagnostics`: representations and Fisher of a checkpoint against the base model's, read
from their captures (no torch)."""

from __future__ import annotations

import os
from collections import defaultdict

import numpy as np

from ..activations import LENS_SPLITS, Capture
from ..fisher_histograms import histogram_distance
from ..io import write_json
from ..membership_probe import DEFAULTS as PROBE_DEFAULTS
from ..membership_probe import probe_auc, summarised
from ..provenance import Recorder
from ..representations import linear_cka, mean_pca_distance, pca_shift, pca_similarity

PathLike = str | os.PathLike


def diagnostics(
    base_capture: PathLike,
    stage_capture: PathLike,
    data_dir: PathLike,
    out_path: PathLike,
    *,
    n_requests: int,
    pca_components: int = 5,
    layer_matrix: bool = False,
    membership_probe: dict | None = None,
) -> None:
    """Representation diagnostics of a checkpoint against the base model, per layer and split:
    linear CKA (biased and unbiased), PCA similarity and PCA shift; Fisher distances per layer.

    Splits: the cell's forget set (requests 1..N), the retain probes, the holdout, all of them,
    and `common`: the first request's samples, the retain probes and the holdout, which every
    cell of the model and dataset shares (what diagnostics compared across N must use). The
    Fisher is compared on the cell's forgotten samples (`fisher`) and on the first request's
    (`fisher_common`), base and stage on the same samples. The logit lens of both models is read
    on the cell's forget set and the holdout (empty when a capture has none).

    With `membership_probe.enabled`, the membership probe (`reversibility.membership_probe`) per
    layer of the stage's capture and of the base's, each telling the cell's forget samples from
    the holdout samples: the base's depends on the cell's N only, and every cell's JSON carries
    it (the tables read it once per N).
    """
    probe = {**PROBE_DEFAULTS, **(membership_probe or {})}
    recorder = Recorder(
        params={
            "n_requests": n_requests,
            "pca_components": pca_components,
            "layer_matrix": layer_matrix,
            "membership_probe": probe,
        },
        inputs={"base": base_capture, "stage": stage_capture},
    )
    with Capture(base_capture) as base, Capture(stage_capture) as stage:
        if base.layers != stage.layers:
            raise ValueError(f"{stage_capture}: its layers differ from those of {base_capture}")
        subsets = {"forget": base.forget_rows(data_dir, n_requests), "retain": slice(None), "holdout": slice(None)}
        first_request = base.forget_rows(data_dir, 1)
        per_split = {split: defaultdict(list) for split in (*subsets, "all", "common")}
        all_views = []
        probes: dict[str, list] = {"stage": [], "base": []}
        for layer in range(len(base.layers)):
            features = {split: (base.features(split, layer), stage.features(split, layer)) for split in subsets}
            views = {split: (x[subsets[split]], y[subsets[split]]) for split, (x, y) in features.items()}
            views["all"] = _stacked(views.values())
            base_forget, stage_forget = features["forget"]
            views["common"] = _stacked(
                [(base_forget[first_request], stage_forget[first_request]), views["retain"], views["holdout"]]
            )
            all_views.append(views["all"])
            for split, (x, y) in views.items():
                _layer_diagnostics(per_split[split], x, y, pca_components)
            if probe["enabled"]:
                for side, index in (("base", 0), ("stage", 1)):
                    forget, holdout = views["forget"][index], views["holdout"][index]
                    probes[side].append(_probe(forget, holdout, probe, f"{side} {base.layers[layer]}"))
        counts = stage.fisher_counts()
        result = {
            "layers": base.layers,
            "n_requests": n_requests,
            "collapsed": bool(stage.attr("collapsed", False)),
            "splits": {split: _summarised(values) for split, values in per_split.items()},
            "fisher": fisher_comparison(base, stage, counts[-1]) if counts else {},
            "fisher_common": fisher_comparison(base, stage, counts[0]) if counts else {},
            "membership_probe": (
                {
                    side: summarised(probes[side], str(capture.attr("pooling", "")))
                    for side, capture in (("stage", stage), ("base", base))
                }
                if probe["enabled"]
                else {}
            ),
            "logit_lens": logit_lens_comparison(base, stage, subsets),
        }
        if layer_matrix:
            result["layer_matrix"] = {
                "split": "all",
                "cka": [[linear_cka(x, y) for _, y in all_views] for x, _ in all_views],
            }
    write_json(out_path, result)
    recorder.write_beside(out_path)


def _probe(members: np.ndarray, nonmembers: np.ndarray, settings: dict, name: str):
    return probe_auc(
        members,
        nonmembers,
        folds=settings["folds"],
        C=settings["C"],
        max_iter=settings["max_iter"],
        name=f"membership probe of {name}",
    )


def _stacked(views) -> tuple[np.ndarray, np.ndarray]:
    views = list(views)
    return np.concatenate([x for x, _ in views]), np.concatenate([y for _, y in views])


def _layer_diagnostics(out: dict[str, list], x: np.ndarray, y: np.ndarray, k: int) -> None:
    out["cka"].append(linear_cka(x, y))
    out["cka_unbiased"].append(linear_cka(x, y, unbiased=True))
    for key, value in {**pca_similarity(x, y, k), **pca_shift(x, y)}.items():
        out[key].append(value)


def _summarised(values: dict[str, list]) -> dict:
    return {**values, "mean_cka": _mean(values["cka"]), "mean_pca_distance": mean_pca_distance(values["distance"])}


def _mean(values: list[float]) -> float:
    finite = [v for v in values if v is not None and np.isfinite(v)]
    return float(np.mean(finite)) if finite else float("nan")


def fisher_comparison(base: Capture, stage: Capture, samples: int) -> dict:
    """Per decoder layer, base and stage on the same first `samples` forget samples: both Fisher
    histograms, their Jensen-Shannon distance, the mass ratio and the share of parameters below
    the histograms' range."""
    bins, base_layers = base.fisher(samples)
    _, stage_layers = stage.fisher(samples)
    if not base_layers or not stage_layers:
        return {}
    layers = [path for path in base_layers if path in stage_layers]

    def below(summaries, path):
        return summaries[path]["below_range"] / summaries[path]["parameters"]

    return {
        "samples": samples,
        "bins": bins.tolist(),
        "layers": layers,
        "histogram_base": [base_layers[p]["histogram"].tolist() for p in layers],
        "histogram": [stage_layers[p]["histogram"].tolist() for p in layers],
        "mass_base": [base_layers[p]["mass"] for p in layers],
        "mass": [stage_layers[p]["mass"] for p in layers],
        "below_range_base": [below(base_layers, p) for p in layers],
        "below_range": [below(stage_layers, p) for p in layers],
        "log10_mass_ratio": [_log_ratio(stage_layers[p]["mass"], base_layers[p]["mass"]) for p in layers],
        "js_distance": [histogram_distance(base_layers[p]["histogram"], stage_layers[p]["histogram"]) for p in layers],
    }


def _log_ratio(value: float, reference: float) -> float:
    if not (np.isfinite(value) and np.isfinite(reference)) or value <= 0 or reference <= 0:
        return float("nan")
    return float(np.log10(value / reference))


def logit_lens_comparison(base: Capture, stage: Capture, subsets: dict) -> dict:
    """Per layer, for the base model and the stage, on each sample set of `subsets`: the logit
    lens's target-token accuracy and mean target log-probability over the set's real targets,
    and their number. Empty when either capture holds no lens (capture.logit_lens off)."""
    if not (base.has_logit_lens() and stage.has_logit_lens()):
        return {}
    return {
        "layers": base.layers,
        **{name: _lens_summary(capture, subsets) for name, capture in (("base", base), ("stage", stage))},
    }


def _lens_summary(capture: Capture, subsets: dict) -> dict:
    summary = {}
    for split, rows in subsets.items():
        if split not in LENS_SPLITS:
            continue
        sums = {name: values[rows].sum(0) for name, values in capture.logit_lens(split).items()}
        targets = sums["targets"]
        summary[split] = {
            "accuracy": _per_target(sums["correct"], targets),
            "mean_logprob": _per_target(sums["logprob"], targets),
            "targets": [int(t) for t in targets],
        }
    return summary


def _per_target(values: np.ndarray, targets: np.ndarray) -> list[float | None]:
    return [float(v / t) if t > 0 else None for v, t in zip(values, targets)]
