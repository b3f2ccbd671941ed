"""Damaged artifacts (truncated, bit-flipped, malformed) are refused with a message naming the
file and the command that rebuilds it, never read as valid."""

import json

import numpy as np
import pytest

from reversibility.activations import Capture, write_capture
from reversibility.io import read_json, write_json
from reversibility.models import load_checkpoint, save_checkpoint
from reversibility.tables import read_metrics


@pytest.fixture
def capture(tmp_path):
    rng = np.random.default_rng(0)
    split = {
        "ids": ["a#0", "b#1", "c#2"],
        "features": [rng.normal(size=(3, 64)).astype(np.float32) for _ in range(3)],
        "stats": {"logprob": rng.normal(size=(3, 5)).astype(np.float32)},
        "zlib": [10, 11, 12],
    }
    path = tmp_path / "results/activations/tiny/toy/base.h5"
    write_capture(path, ["emb", "l0", "norm"], {"forget": split}, {"pooling": "mean"})
    return path


def flip_bit(path, offset):
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x10
    path.write_bytes(bytes(data))


def test_every_dataset_reads_back_through_its_checksum(capture):
    with Capture(capture) as cap:
        assert cap.ids("forget") == ["a#0", "b#1", "c#2"]
        assert cap.features("forget", 1).shape == (3, 64)
        assert list(cap.zlib("forget")) == [10, 11, 12]
        assert set(cap.token_stats("forget")) == {"logprob"}


def test_a_flipped_bit_in_a_layer_is_refused_naming_the_file(capture):
    import h5py

    with h5py.File(capture, "r") as h5:
        offset = h5["splits/forget/hidden/1"].id.get_chunk_info(0).byte_offset
    flip_bit(capture, offset + 100)
    with Capture(capture) as cap:
        np.testing.assert_equal(cap.features("forget", 0).shape, (3, 64))  # other layers still read
        with pytest.raises(ValueError, match="checksum") as caught:
            cap.features("forget", 1)
    assert str(capture) in str(caught.value) and f"--forcerun {capture}" in str(caught.value)


@pytest.mark.parametrize("keep", [0.2, 0.6, 0.95])
def test_a_truncated_capture_is_refused_naming_the_file(capture, keep):
    data = capture.read_bytes()
    capture.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(ValueError) as caught:
        with Capture(capture) as cap:
            for layer in range(3):
                cap.features("forget", layer)
            cap.token_stats("forget")
    assert str(capture) in str(caught.value)


def test_a_truncated_or_altered_checkpoint_is_refused_naming_it(tmp_path, tiny_model, tiny_tokenizer):
    checkpoint = tmp_path / "results/runs/tiny/toy/ga/n1/lr0.001/unlearned"
    save_checkpoint(tiny_model, tiny_tokenizer, checkpoint, {"seed": 0})
    load_checkpoint(checkpoint)  # intact: loads
    weights = checkpoint / "model.safetensors"
    intact = weights.read_bytes()
    flip_bit(weights, len(intact) - 10)  # inside the last tensor
    with pytest.raises(ValueError, match="sha256") as caught:
        load_checkpoint(checkpoint)
    assert str(checkpoint) in str(caught.value)
    weights.write_bytes(intact[: len(intact) // 2])
    with pytest.raises(ValueError, match="truncated or altered"):
        load_checkpoint(checkpoint)
    (checkpoint / "provenance.json").unlink()
    weights.write_bytes(intact)
    with pytest.raises(ValueError, match="incomplete checkpoint"):
        load_checkpoint(checkpoint)


def test_malformed_metrics_json_is_refused_naming_the_file_and_key(tmp_path):
    path = tmp_path / "unlearned.json"
    path.write_text('{"forget": {"accuracy": 0.5, "sequence_accuracy"')
    with pytest.raises(ValueError, match="not valid JSON") as caught:
        read_json(path)
    assert str(path) in str(caught.value)
    write_json(path, {"forget": {"accuracy": "high"}})
    with pytest.raises(ValueError, match="malformed metrics") as caught:
        read_metrics(path)
    assert str(path) in str(caught.value)
    path.write_bytes(b"\xff\xfe garbage")
    with pytest.raises(ValueError, match="not valid JSON"):
        read_json(path)


def test_a_json_artifact_is_never_left_half_written(tmp_path):
    path = tmp_path / "metrics.json"
    write_json(path, {"a": 1})

    class Exploding:
        pass

    with pytest.raises(TypeError):
        write_json(path, {"a": Exploding()})
    assert json.loads(path.read_text()) == {"a": 1}  # the old content, intact
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]  # no temporary left behind
