"""What each stage of a cell trains on, and the controls and probes that must stay untouched."""

import itertools

import pytest

from reversibility import cell_data, data
from reversibility.io import write_json, write_jsonl

REQUEST_SIZE = 2
SIZES = {"forget": 8, "retain": 6, "retain_eval": 4, "holdout": 4, "unseen": 16}


def prepared(folder, prefix):
    """A prepared dataset: every split with distinct ids, four requests of two samples."""
    folder.mkdir()
    for split, n in SIZES.items():
        records = [
            {
                "id": f"{prefix}-{split}-{i}",
                "document": f"{prefix}-{split}-doc{i}",
                "text": f"{prefix} {split} text {i}",
                **({"request": i // REQUEST_SIZE + 1} if split == "forget" else {}),
            }
            for i in range(n)
        ]
        write_jsonl(folder / f"{split}.jsonl", records)
    write_json(folder / "manifest.json", {"requests": {"count": 4, "size": REQUEST_SIZE}})
    return folder


@pytest.fixture
def two_domains(tmp_path):
    return prepared(tmp_path / "code", "c"), prepared(tmp_path / "prose", "p")


def ids(records):
    return {r["id"] for r in records}


def test_relearning_on_the_forget_set_takes_the_cell_requests(two_domains):
    code, prose = two_domains
    assert [r["id"] for r in cell_data.relearning_set(code, code, "forget", 2)] == [f"c-forget-{i}" for i in range(4)]
    assert cell_data.control_kind(code, code, "forget") == cell_data.SEPARATE_RUN
    # Another domain's forget set is a transfer: its control is the same run.
    assert ids(cell_data.relearning_set(code, prose, "forget", 1)) == {"p-forget-0", "p-forget-1"}
    assert cell_data.control_kind(code, prose, "forget") == cell_data.SAME_RUN


def test_the_unseen_split_gives_each_role_its_own_slice(two_domains):
    code, prose = two_domains
    assert [r["id"] for r in cell_data.control_set(code, 2)] == [f"c-unseen-{i}" for i in range(4)]
    relearned = cell_data.relearning_set(code, code, "unseen", 2)
    assert [r["id"] for r in relearned] == [f"c-unseen-{i}" for i in range(4, 8)]
    assert [r["id"] for r in cell_data.baseline_set(code, code, "unseen", 2)] == [f"c-unseen-{i}" for i in range(8, 16)]
    # Another domain's unseen split is not the control's: it starts at its beginning.
    assert [r["id"] for r in cell_data.relearning_set(code, prose, "unseen", 1)] == ["p-unseen-0", "p-unseen-1"]


def test_a_source_too_small_is_refused_naming_it(two_domains):
    code, prose = two_domains
    with pytest.raises(data.DataError, match="retain_eval split holds 4 samples, fewer than the 8"):
        cell_data.relearning_set(code, prose, "retain_eval", 4)
    with pytest.raises(data.DataError, match="the relearning at N = 5 needs samples \\[10, 20\\)"):
        cell_data.relearning_set(code, code, "unseen", 5)
    with pytest.raises(data.DataError, match="the baseline at N = 4 needs samples from 16 on"):
        cell_data.baseline_set(code, code, "unseen", 4)


SOURCES = list(itertools.product(["forget", "retain", "unseen"], ["own", "other"]))
BASELINES = list(itertools.product(["retain", "unseen"], ["own", "other"]))


@pytest.mark.parametrize("relearning,baseline", list(itertools.product(SOURCES, BASELINES)))
@pytest.mark.parametrize("n_requests", [1, 2, 3])
def test_controls_and_retain_probes_are_untouched_by_every_stage(two_domains, relearning, baseline, n_requests):
    """For every relearning and baseline source: the control is disjoint from every sample any
    stage of the cell trains on (base, unlearning with its retain term, the baseline, relearning),
    and the retain probes from every stage after the base model."""
    code, prose = two_domains
    domain = {"own": code, "other": prose}
    relearning_source, baseline_source = relearning[0], baseline[0]
    base = set().union(*(ids(data.load_split(code, split)) for split in ("forget", "retain", "retain_eval")))
    after_base = {
        "unlearning": ids(cell_data.forgotten(code, n_requests)),
        "retain term": ids(data.load_split(code, "retain")),
        "baseline": ids(cell_data.baseline_set(code, domain[baseline[1]], baseline_source, n_requests)),
        "relearning": ids(cell_data.relearning_set(code, domain[relearning[1]], relearning_source, n_requests)),
    }
    control = ids(cell_data.control_set(code, n_requests))
    probes = ids(cell_data.retain_probe(code, SIZES["retain_eval"]))
    assert len(control) == n_requests * REQUEST_SIZE
    for stage, trained in {"base": base, **after_base}.items():
        assert not control & trained, stage
    for stage, trained in after_base.items():
        assert not probes & trained, stage
    assert probes <= base  # R.Acc is on samples the base model learned


def test_fisher_counts_give_base_and_stage_the_same_samples():
    # A cell's model: the first request's samples and requests 1..N, capped at fisher_samples.
    assert cell_data.fisher_counts(16, 8, n_requests=1) == [8]
    assert cell_data.fisher_counts(16, 8, n_requests=8) == [8, 16]
    assert cell_data.fisher_counts(20, 8, n_requests=2) == [8, 16]
    assert cell_data.fisher_counts(5, 8, n_requests=3) == [5]
    assert cell_data.fisher_counts(0, 8, n_requests=3) == []
    # The base model: every request boundary, so that it holds whatever any cell compares with.
    base = cell_data.fisher_counts(20, 8)
    assert base == [8, 16, 20]
    for n in range(1, 6):
        assert set(cell_data.fisher_counts(20, 8, n_requests=n)) <= set(base)


@pytest.mark.parametrize("n_requests, relearned_requests", [(2, {1}), (3, {1, 2}), (4, {1, 2})])
def test_held_out_recovery_holds_out_whole_requests_at_n_of_two_and_more(two_domains, n_requests, relearned_requests):
    code, _ = two_domains
    relearned, held_out = cell_data.held_out_split(code, n_requests)
    assert {r["request"] for r in relearned} == relearned_requests
    assert {r["request"] for r in held_out} == set(range(1, n_requests + 1)) - relearned_requests
    assert relearned + held_out == cell_data.forgotten(code, n_requests)


def test_held_out_recovery_at_n_of_one_splits_the_request(two_domains, tmp_path):
    code, _ = two_domains
    relearned, held_out = cell_data.held_out_split(code, 1)
    assert (ids(relearned), ids(held_out)) == ({"c-forget-0"}, {"c-forget-1"})
    # A request of one sample cannot be split: refused, naming the keys that fix it.
    single = tmp_path / "single"
    single.mkdir()
    write_jsonl(single / "forget.jsonl", [{"id": "s-0", "text": "s", "request": 1}])
    write_json(single / "manifest.json", {"requests": {"count": 1, "size": 1}})
    with pytest.raises(cell_data.DataError, match="relearning.held_out"):
        cell_data.held_out_split(single, 1)
