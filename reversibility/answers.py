"""Final answers of math solutions: extraction and comparison.

GSM8K style: the number after the last `####` (or, failing that, the last number in the text),
with thousands separators, a sign, decimals, a currency sign or a trailing unit word allowed.
MATH style: the content of the last `\\boxed{...}` (nested braces balanced; `\\fbox` too).
Answers are compared after normalisation: numbers numerically (`1,000.50` = `1000.5`), other
answers as strings with spaces, `\\left`/`\\right`, `\\!`, `$`, a trailing period and text
wrappers removed, and `\\dfrac`/`\\tfrac` read as `\\frac`.
"""

from __future__ import annotations

import re
from fractions import Fraction

_NUMBER = re.compile(r"-?\s*\$?\s*\d[\d,]*(?:\.\d+)?|-?\s*\$?\s*\.\d+")
_GSM_MARK = "####"


def extract_gsm8k(text: str) -> str | None:
    """The answer after the last `####`, else the last number of the text."""
    if _GSM_MARK in text:
        tail = text.rsplit(_GSM_MARK, 1)[1]
        numbers = _NUMBER.findall(tail)
        if numbers:
            return _clean_number(numbers[0])
        stripped = tail.strip().split("\n")[0].strip()
        return stripped or None
    numbers = _NUMBER.findall(text)
    return _clean_number(numbers[-1]) if numbers else None


def _clean_number(raw: str) -> str:
    return raw.replace(" ", "").replace("$", "").replace(",", "")


def extract_boxed(text: str) -> str | None:
    """The content of the last \\boxed{...} (or \\fbox{...}), braces balanced."""
    boxed, fbox = text.rfind("\\boxed"), text.rfind("\\fbox")
    if boxed < 0 and fbox < 0:
        return None
    start = boxed + len("\\boxed") if boxed > fbox else fbox + len("\\fbox")
    brace = start + len(text[start:]) - len(text[start:].lstrip())
    if brace >= len(text) or text[brace] != "{":
        # "\boxed 5" (no braces) takes the next token
        rest = text[start:].split()
        return rest[0].rstrip(".$") if rest else None
    depth = 0
    for index in range(brace, len(text)):
        if text[index] == "{":
            depth += 1
        elif text[index] == "}":
            depth -= 1
            if depth == 0:
                return text[brace + 1 : index]
    return None


def extract(text: str, style: str) -> str | None:
    if style == "gsm8k":
        return extract_gsm8k(text)
    if style == "math":
        return extract_boxed(text)
    raise ValueError(f"unknown answer style {style!r}; known: gsm8k, math")


def normalise(answer: str | None) -> str | None:
    if answer is None:
        return None
    text = answer.strip()
    for wrapper in ("\\text", "\\textbf", "\\mathrm", "\\mbox"):
        text = re.sub(re.escape(wrapper) + r"\{([^{}]*)\}", r"\1", text)
    text = text.replace("\\left", "").replace("\\right", "").replace("\\!", "").replace("\\,", "")
    text = text.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac").replace("$", "")
    text = _braced_fractions(text)
    text = text.replace("\\%", "%")
    text = re.sub(r"\s+", "", text).rstrip(".")
    text = re.sub(r"\^\{?\\circ\}?$", "", text)  # 30^\circ -> 30
    number = _as_number(text)
    return _format_number(number) if number is not None else text


def _braced_fractions(text: str) -> str:
    """MATH's shorthand fractions written out: \\frac34 -> \\frac{3}{4}, \\frac1{2}, \\frac{1}2."""
    text = re.sub(r"\\frac(\d)(\d)", r"\\frac{\1}{\2}", text)
    text = re.sub(r"\\frac(\d)\{", r"\\frac{\1}{", text)
    return re.sub(r"\\frac(\{[^{}]*\})(\d)", r"\\frac\1{\2}", text)


def _as_number(text: str) -> Fraction | None:
    candidate = text.replace(",", "")
    match = re.fullmatch(r"\\frac\{(-?\d+)\}\{(-?\d+)\}", candidate)
    if match and int(match.group(2)) != 0:
        return Fraction(int(match.group(1)), int(match.group(2)))
    match = re.fullmatch(r"(-?\d+)/(\d+)", candidate)
    if match and int(match.group(2)) != 0:
        return Fraction(int(match.group(1)), int(match.group(2)))
    if re.fullmatch(r"-?(\d+(\.\d*)?|\.\d+)%?", candidate):
        return Fraction(candidate.rstrip("%"))
    return None


def _format_number(value: Fraction) -> str:
    return str(value.numerator) if value.denominator == 1 else f"{value.numerator}/{value.denominator}"


def is_correct(generated: str, reference: str, style: str) -> bool:
    """Does the generated solution's final answer equal the reference answer?"""
    predicted = normalise(extract(generated, style))
    return predicted is not None and predicted == normalise(reference)
