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


def test_without_a_bos_token_a_sequence_is_the_text_alone(bosless_tokenizer):
    (ids,) = encode(bosless_tokenizer, ["def f(x):\n    return x"], max_length=64)
    assert bosless_tokenizer.decode(ids) == "def f(x):\n    return x"


def test_the_zlib_length_is_that_of_the_whole_text_with_or_without_a_bos_token(tiny_tokenizer, bosless_tokenizer):
    import zlib

    from reversibility.stages.capture import zlib_length

    text = "def gcd(a, b):\n    while b:\n        a, b = b, a % b\n    return a"
    expected = len(zlib.compress(text.encode()))
    for tokenizer in (tiny_tokenizer, bosless_tokenizer):
        (ids,) = encode(tokenizer, [text], max_length=128)
        assert zlib_length(tokenizer, ids) == expected
