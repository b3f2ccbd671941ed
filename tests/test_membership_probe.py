"""The representation-level membership probe against independent references: separable and
identical classes, an out-of-fold loop of its own with a Mann-Whitney U, invariance to a massive
activation, and too few samples."""

import json
import warnings

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold

from reversibility.membership_probe import balanced, fold_count, probe_auc


def shifted(rng, n, d, shift, direction=0):
    """n members and n non-members in d dimensions, members moved by `shift` along one axis."""
    members, nonmembers = rng.normal(size=(n, d)), rng.normal(size=(n, d))
    members[:, direction] += shift
    return members, nonmembers


def mann_whitney_auc(member_scores, nonmember_scores):
    """P(member score > non-member score) + 0.5 P(tie), counted over all pairs."""
    diff = np.subtract.outer(member_scores, nonmember_scores)
    return ((diff > 0).sum() + 0.5 * (diff == 0).sum()) / diff.size


def test_a_mean_shift_along_one_direction_is_found():
    rng = np.random.default_rng(0)
    aucs = [probe_auc(*shifted(rng, 100, 16, shift=4.0)).auc for _ in range(3)]
    # Two unit Gaussians 4 apart: the Bayes AUC is Phi(4 / sqrt(2)) = 0.9977.
    assert min(aucs) > 0.95


def test_identical_distributions_give_chance():
    rng = np.random.default_rng(1)
    aucs = [probe_auc(*shifted(rng, 200, 8, shift=0.0)).auc for _ in range(5)]
    # Under the null one AUC on 200 + 200 samples has a standard deviation of about 0.03; the
    # mean of five about 0.013, so 0.08 is six standard deviations.
    assert np.mean(aucs) == pytest.approx(0.5, abs=0.08)


def test_members_scoring_higher_means_an_auc_above_one_half():
    rng = np.random.default_rng(2)
    members, nonmembers = shifted(rng, 60, 4, shift=3.0)
    assert probe_auc(members, nonmembers).auc > 0.9
    assert probe_auc(nonmembers, members).auc > 0.9  # the probe learns the direction of each fold


def test_the_auc_is_the_mann_whitney_u_of_out_of_fold_scores_from_an_independent_loop():
    rng = np.random.default_rng(3)
    members, nonmembers = shifted(rng, 40, 12, shift=0.8)
    members, nonmembers = members * 50 + 3, nonmembers * 50 + 3  # the reference standardises too
    result = probe_auc(members, nonmembers, folds=5, C=0.5)
    x = np.concatenate([members, nonmembers])
    y = np.r_[np.ones(40), np.zeros(40)]
    scores = np.empty(80)
    for train, test in StratifiedKFold(5, shuffle=True, random_state=0).split(x, y):
        mean, sd = x[train].mean(0), x[train].std(0)
        model = LogisticRegression(C=0.5, max_iter=1000).fit((x[train] - mean) / sd, y[train])
        scores[test] = (x[test] - mean) / sd @ model.coef_[0] + model.intercept_[0]
    assert result.folds == 5 and result.samples_per_class == 40 and result.converged
    assert result.auc == pytest.approx(mann_whitney_auc(scores[y == 1], scores[y == 0]), abs=1e-9)


def test_a_massive_activation_changes_nothing():
    rng = np.random.default_rng(4)
    members, nonmembers = shifted(rng, 50, 10, shift=1.0, direction=3)
    reference = probe_auc(members, nonmembers).auc
    scale = np.ones(10)
    scale[7] = 1e4
    assert probe_auc(members * scale, nonmembers * scale).auc == pytest.approx(reference, abs=1e-6)


def test_classes_are_balanced_on_their_first_samples():
    members, nonmembers = np.arange(10.0)[:, None], -np.arange(3.0)[:, None]
    features, labels = balanced(members, nonmembers)
    assert features[:, 0].tolist() == [0, 1, 2, 0, -1, -2] and labels.tolist() == [1, 1, 1, 0, 0, 0]
    assert probe_auc(members, nonmembers, folds=5).folds == 3  # k = min(folds, samples per class)


def test_too_few_samples_give_no_auc_and_say_why():
    assert fold_count(1) is None and fold_count(2) == 2 and fold_count(30) == 5
    result = probe_auc(np.ones((5, 4)), np.zeros((1, 4)))
    assert result.auc is None and result.folds == 0
    assert "1 sample(s) per class" in result.reason and "at least 2" in result.reason


def test_non_finite_features_give_nan():
    members = np.ones((4, 3))
    members[0, 0] = np.nan
    assert np.isnan(probe_auc(members, np.zeros((4, 3))).auc)


def test_a_fit_that_does_not_converge_warns_and_keeps_its_auc():
    rng = np.random.default_rng(5)
    members, nonmembers = shifted(rng, 30, 64, shift=1.0)
    with pytest.warns(RuntimeWarning, match="did not converge in 1 iterations"):
        result = probe_auc(members, nonmembers, max_iter=1, name="layer 3")
    assert not result.converged and 0.0 <= result.auc <= 1.0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert probe_auc(members, nonmembers).converged


# --------------------------------------------------------------------------- in the diagnostics stage


def write_cell(tmp_path, shifts, far_second_request=False, seed=0):
    """A capture of 3 layers whose forget samples of request 1 are shifted by `shifts[layer]`
    along one axis, and a data folder with two requests of 40 samples each, request 2 first in the
    capture's order."""
    from reversibility.activations import write_capture

    rng = np.random.default_rng(seed)
    forget_ids = [f"f{i}" for i in range(80)]
    features = {"forget": [], "holdout": [], "retain": []}
    for shift in shifts:
        forget = rng.normal(size=(80, 8))
        forget[40:, 0] += shift
        if far_second_request:  # samples outside the cell's forget set (N = 1) that would be easy
            forget[:40, 1] += 50.0
        features["forget"].append(forget)
        features["holdout"].append(rng.normal(size=(60, 8)))
        features["retain"].append(rng.normal(size=(10, 8)))
    ids = {"forget": forget_ids, "holdout": [f"h{i}" for i in range(60)], "retain": [f"r{i}" for i in range(10)]}
    path = tmp_path / f"capture-{seed}.h5"
    layers = ["model.embed_tokens", "model.layers.0", "model.norm"]
    splits = {split: {"ids": ids[split], "features": features[split], "stats": {}} for split in features}
    write_capture(path, layers, splits, {"pooling": "mean"})
    data_dir = tmp_path / "data"
    data_dir.mkdir(exist_ok=True)
    records = [{"id": sample, "request": 2 - i // 40, "text": sample} for i, sample in enumerate(forget_ids)]
    (data_dir / "forget.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return path, data_dir


def test_the_diagnostics_probe_the_stage_and_the_base_on_the_cells_forget_set(tmp_path):
    from reversibility.io import read_json
    from reversibility.stages.diagnostics import diagnostics

    base, data_dir = write_cell(tmp_path, shifts=(0.0, 4.0, 4.0), seed=1)
    stage, _ = write_cell(tmp_path, shifts=(0.0, 0.0, 4.0), far_second_request=True, seed=2)
    diagnostics(base, stage, data_dir, tmp_path / "on.json", n_requests=1)
    probe = read_json(tmp_path / "on.json")["membership_probe"]
    assert probe["base"]["pooling"] == probe["stage"]["pooling"] == "mean"
    assert probe["stage"]["samples_per_class"] == 40 and probe["stage"]["folds"] == 5
    assert all(probe["stage"]["converged"]) and probe["stage"]["reason"] == ""
    base_auc, stage_auc = probe["base"]["auc"], probe["stage"]["auc"]
    assert base_auc[0] == pytest.approx(0.5, abs=0.2) and min(base_auc[1:]) > 0.95
    assert stage_auc[0] == pytest.approx(0.5, abs=0.2) and stage_auc[1] == pytest.approx(0.5, abs=0.2)
    assert stage_auc[2] > 0.95
    diagnostics(base, stage, data_dir, tmp_path / "off.json", n_requests=1, membership_probe={"enabled": False})
    assert read_json(tmp_path / "off.json")["membership_probe"] == {}
