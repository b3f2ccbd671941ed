import pytest

from reversibility.answers import extract_boxed, extract_gsm8k, is_correct, normalise

GSM8K = [
    ("Natalia sold 48 clips.\n#### 72", "72"),
    ("so the total is 1,234 dollars\n#### 1,234", "1234"),
    ("#### -5", "-5"),
    ("The answer is\n#### 3.75", "3.75"),
    ("He spends $1,500 in total.\n#### $1,500", "1500"),
    ("#### 12 apples", "12"),
    ("No marker, but the last number is 42.", "42"),
    ("first 3 then 4 then #### 7\nthen 9", "7"),
    ("#### 0.5", "0.5"),
    ("#### .5", ".5"),
    ("- 3 + 2 = -1\n#### - 1", "-1"),
    ("nothing numeric here", None),
]

BOXED = [
    ("so $x = \\boxed{5}$.", "5"),
    ("\\boxed{\\frac{1}{2}}", "\\frac{1}{2}"),
    ("first \\boxed{1} then \\boxed{2}", "2"),
    ("\\boxed{\\left( 3, \\frac{\\pi}{2} \\right)}", "\\left( 3, \\frac{\\pi}{2} \\right)"),
    ("\\boxed{x^{2}+1}", "x^{2}+1"),
    ("\\fbox{7}", "7"),
    ("\\boxed 5.", "5"),
    ("unbalanced \\boxed{\\frac{1}{2}", None),
    ("no box at all", None),
]

EQUIVALENT = [
    ("1,000", "1000"),
    ("1000.0", "1000"),
    ("\\dfrac{1}{2}", "\\frac{1}{2}"),
    ("\\frac{2}{4}", "1/2"),
    ("0.5", "1/2"),
    ("\\text{east}", "east"),
    ("30^\\circ", "30"),
    ("$12$", "12"),
    ("3.", "3"),
    ("50\\%", "50"),
    ("\\left(1,2\\right)", "(1,2)"),
    ("\\frac34", "3/4"),
    ("\\frac1{2}", "\\dfrac{1}{2}"),
    ("\\frac{\\pi}2", "\\frac{\\pi}{2}"),
]


@pytest.mark.parametrize("text, answer", GSM8K)
def test_gsm8k_extraction(text, answer):
    assert extract_gsm8k(text) == answer


@pytest.mark.parametrize("text, answer", BOXED)
def test_boxed_extraction(text, answer):
    assert extract_boxed(text) == answer


@pytest.mark.parametrize("a, b", EQUIVALENT)
def test_normalisation_equates_the_same_answer(a, b):
    assert normalise(a) == normalise(b)


def test_different_answers_stay_different():
    assert normalise("12") != normalise("-12") and normalise("1/3") != normalise("0.33")
    assert not is_correct("#### 71", "72", "gsm8k")
    assert is_correct("2 + 70 = 72\n#### 72", "72", "gsm8k")
    assert is_correct("the value is \\boxed{\\dfrac{3}{6}}", "\\frac{1}{2}", "math")
    assert not is_correct("no answer", "4", "math")
    assert len(GSM8K) + len(BOXED) + len(EQUIVALENT) >= 20
