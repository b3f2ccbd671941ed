import pytest

from reversibility import data
from reversibility.io import write_jsonl
from reversibility.stages.training import relearning_set


def write_split(folder, split, n, prefix):
    records = [{"id": f"{prefix}{i}", "document": f"{prefix}doc{i}", "text": f"{prefix} text {i}",
                **({"request": i // 2 + 1} if split == "forget" else {})} for i in range(n)]
    write_jsonl(folder / f"{split}.jsonl", records)


@pytest.fixture
def two_domains(tmp_path):
    code, prose = tmp_path / "code", tmp_path / "prose"
    for folder, prefix in ((code, "c"), (prose, "p")):
        folder.mkdir()
        write_split(folder, "forget", 8, prefix)
        write_split(folder, "unseen", 5, prefix + "u")
    return code, prose


def test_relearning_on_the_forget_set_takes_the_cell_requests(two_domains):
    code, _ = two_domains
    assert [r["id"] for r in relearning_set(code, code, "forget", 2)] == ["c0", "c1", "c2", "c3"]


def test_a_control_relearns_on_as_many_unseen_samples(two_domains):
    code, prose = two_domains
    assert [r["id"] for r in relearning_set(code, code, "unseen", 2)] == ["cu0", "cu1", "cu2", "cu3"]
    assert [r["id"] for r in relearning_set(code, prose, "unseen", 1)] == ["pu0", "pu1"]


def test_a_source_smaller_than_the_forget_set_is_refused(two_domains):
    code, prose = two_domains
    with pytest.raises(data.DataError, match="unseen split holds 5 samples, fewer than the 8"):
        relearning_set(code, prose, "unseen", 4)
