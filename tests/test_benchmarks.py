"""Evaluation benchmarks from local files shaped like GSM8K and MATH-500, and the generation that
answers them."""

import json

import pytest

from reversibility import benchmarks
from reversibility.generation import greedy_generate, prompt_ids
from reversibility.sources import DataError
from reversibility.stages.checkpoint_metrics import benchmark_accuracy

# The columns of openai/gsm8k (worked answer ending in "#### n") and of HuggingFaceH4/MATH-500.
GSM8K_ROWS = [
    {
        "question": "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. "
        "How many clips did Natalia sell altogether in April and May?",
        "answer": "Natalia sold 48/2 = <<48/2=24>>24 clips in May.\nNatalia sold 48+24 = <<48+24=72>>72 clips "
        "altogether in April and May.\n#### 72",
    },
    {
        "question": "Weng earns $12 an hour for babysitting. Yesterday, she just did 50 minutes of babysitting. "
        "How much did she earn?",
        "answer": "Weng earns 12/60 = $<<12/60=0.2>>0.2 per minute.\nWorking 50 minutes, she earned 0.2 x 50 = "
        "$<<0.2*50=10>>10.\n#### 10",
    },
    {
        "question": "Betty needs $100 for a wallet and has half of it. How much more does she need?",
        "answer": "She has 100 / 2 = $<<100/2=50>>50.\n#### 1,050",
    },
]
MATH_ROWS = [
    {
        "problem": "Convert the point $(0,3)$ in rectangular coordinates to polar coordinates.",
        "solution": "We have $r = 3$ and $\\theta = \\frac{\\pi}{2}$, so $\\boxed{\\left( 3, \\frac{\\pi}{2} \\right)}$.",  # noqa: E501
        "answer": "\\left( 3, \\frac{\\pi}{2} \\right)",
        "subject": "Precalculus",
        "level": 2,
        "unique_id": "test/precalculus/807.json",
    },
    {
        "problem": "What is $\\frac{1}{2} + \\frac{1}{4}$?",
        "solution": "It is $\\boxed{\\frac{3}{4}}$.",
        "answer": "\\frac34",
        "subject": "Prealgebra",
        "level": 1,
        "unique_id": "test/prealgebra/1.json",
    },
]


def spec(**values):
    """A benchmark spec with the schema's defaults."""
    defaults = {
        "source": "json",
        "hub_id": None,
        "hub_config": None,
        "hub_split": "test",
        "revision": None,
        "streaming": False,
        "files": [],
        "question_field": "question",
        "answer_field": "answer",
        "answer_style": "gsm8k",
        "prompt": "Problem: {question}\nSolution:",
        "problems": None,
        "max_new_tokens": 8,
        "batch_size": 4,
        "stop": [],
    }
    return {**defaults, **values}


def write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def test_gsm8k_references_are_the_numbers_after_the_marks(tmp_path):
    problems = benchmarks.load_problems("gsm8k", spec(files=[write(tmp_path / "gsm8k.jsonl", GSM8K_ROWS)]))
    assert [p["answer"] for p in problems] == ["72", "10", "1050"]
    assert problems[0]["question"].startswith("Natalia") and problems[0]["id"] == "gsm8k/0"


def test_math_references_are_the_bare_answers_or_the_boxed_ones(tmp_path):
    files = [write(tmp_path / "math.jsonl", MATH_ROWS)]
    bare = benchmarks.load_problems("math500", spec(files=files, question_field="problem", answer_style="math"))
    boxed = benchmarks.load_problems(
        "math500", spec(files=files, question_field="problem", answer_style="math", answer_field="solution")
    )
    assert [p["answer"] for p in bare] == ["\\left( 3, \\frac{\\pi}{2} \\right)", "\\frac34"]
    assert [p["answer"] for p in boxed] == ["\\left( 3, \\frac{\\pi}{2} \\right)", "\\frac{3}{4}"]


def test_a_parquet_benchmark_reads_the_same_problems(tmp_path):
    import pandas as pd

    pd.DataFrame(GSM8K_ROWS).to_parquet(tmp_path / "gsm8k.parquet")
    problems = benchmarks.load_problems("gsm8k", spec(source="parquet", files=[str(tmp_path / "gsm8k.parquet")]))
    assert [p["answer"] for p in problems] == ["72", "10", "1050"]


def test_the_first_problems_are_kept_and_too_many_is_refused(tmp_path):
    files = [write(tmp_path / "gsm8k.jsonl", GSM8K_ROWS)]
    assert len(benchmarks.load_problems("gsm8k", spec(files=files, problems=2))) == 2
    with pytest.raises(DataError, match="5 problems asked .key 'problems'., the source holds 3"):
        benchmarks.load_problems("gsm8k", spec(files=files, problems=5))


def test_a_missing_column_or_answer_is_named(tmp_path):
    files = [write(tmp_path / "math.jsonl", MATH_ROWS)]
    with pytest.raises(DataError, match="field 'question'.*columns: answer, level, problem"):
        benchmarks.load_problems("math500", spec(files=files, answer_style="math"))
    no_number = [write(tmp_path / "bad.jsonl", [{"question": "q", "answer": "no final answer here"}])]
    with pytest.raises(DataError, match="row 0 has no final answer"):
        benchmarks.load_problems("gsm8k", spec(files=no_number))


def test_prepared_problems_come_back_with_a_manifest(tmp_path):
    manifest = benchmarks.prepare("gsm8k", spec(files=[write(tmp_path / "g.jsonl", GSM8K_ROWS)]), tmp_path / "out")
    assert manifest["problems"] == 3 and len(manifest["sha256"]) == 64
    assert benchmarks.problems_of(spec(), tmp_path / "out", tmp_path) == benchmarks.load_problems(
        "gsm8k", spec(files=[str(tmp_path / "g.jsonl")])
    )


def test_scoring_compares_final_answers_per_style():
    answered = {
        "gsm8k": {
            "ids": ["a", "b"],
            "answers": ["72", "10"],
            "answer_style": "gsm8k",
            "generations": [" 48+24 = 72 clips.\n#### 72", " She earned $12."],
        },
        "math500": {
            "ids": ["c"],
            "answers": ["\\frac34"],
            "answer_style": "math",
            "generations": [" So it is $\\boxed{\\dfrac{3}{4}}$."],
        },
    }
    assert benchmark_accuracy(answered) == {
        "gsm8k": {"accuracy": 0.5, "problems": 2, "answer_style": "gsm8k"},
        "math500": {"accuracy": 1.0, "problems": 1, "answer_style": "math"},
    }


# --------------------------------------------------------------------------- generation


def test_a_long_prompt_keeps_its_end_and_the_bos(tiny_tokenizer, bosless_tokenizer):
    prompt = "word " * 50 + "Solution:"
    ids = prompt_ids(tiny_tokenizer, prompt, budget=10)
    assert len(ids) == 10 and ids[0] == tiny_tokenizer.bos_token_id
    assert tiny_tokenizer.decode(ids[1:]).endswith("Solution:")
    assert bosless_tokenizer.decode(prompt_ids(bosless_tokenizer, prompt, budget=10)).endswith("Solution:")


def test_generation_stays_within_the_models_positions(tiny_model, tiny_tokenizer):
    positions = tiny_model.config.max_position_embeddings  # 32
    outputs = greedy_generate(
        tiny_model, tiny_tokenizer, ["x = " * 40, "def f():"], max_new_tokens=positions - 4, batch_size=2
    )
    assert len(outputs) == 2
    with pytest.raises(ValueError, match="leaves no room for a prompt"):
        greedy_generate(tiny_model, tiny_tokenizer, ["def f():"], max_new_tokens=positions - 1, batch_size=1)


def test_generation_stops_at_a_stop_string_of_its_own_text(tiny_model, tiny_tokenizer):
    """The prompt ends in ':' and the free continuation begins '::::': a stop string ':::' must
    match the generated text only, not across the prompt's end."""
    free = greedy_generate(tiny_model, tiny_tokenizer, ["def f():"], max_new_tokens=20, batch_size=1)[0]
    assert free.startswith("::::")
    stopped = greedy_generate(
        tiny_model, tiny_tokenizer, ["def f():", "x"], max_new_tokens=20, batch_size=2, stop=[":::"]
    )
    assert stopped[0] == ""
    late = free[free.find(free[-3:]) :][:3]  # a string first reached at the end
    assert (
        greedy_generate(tiny_model, tiny_tokenizer, ["def f():"], max_new_tokens=20, batch_size=1, stop=[late])[0]
        == free[: free.find(late)]
    )
