from reversibility.tokenization import IGNORE_INDEX, collate, encode


def test_encode_prepends_bos_and_truncates(tiny_tokenizer):
    (ids,) = encode(tiny_tokenizer, ["def f(x):\n    return x" * 20], max_length=10)
    assert len(ids) == 10 and ids[0] == tiny_tokenizer.bos_token_id
    assert tiny_tokenizer.decode(ids[1:]).startswith("def f(x)")


def test_collate_right_pads_and_masks_labels():
    batch = collate([[5, 6, 7], [8]], pad_id=0)
    assert batch.input_ids.tolist() == [[5, 6, 7], [8, 0, 0]]
    assert batch.attention_mask.tolist() == [[1, 1, 1], [1, 0, 0]]
    assert batch.labels.tolist() == [[5, 6, 7], [8, IGNORE_INDEX, IGNORE_INDEX]]
