"""HumanEval's native completion is the function's body alone: `code_tests` judges it after the prompt's signature
and docstring when the completion does not define the entry point itself (issue 28). Real HumanEval-shaped rows
(tests/fixtures/humaneval.jsonl and .csv), scored the way a training step scores them."""

from __future__ import annotations

from pathlib import Path

import pytest

from groupwise.config.schema import DataConfig, RewardSpec
from groupwise.data.files import load_file_rows
from groupwise.data.prompts import render_prompts
from groupwise.models.tiny import build_tiny_tokenizer
from groupwise.rewards.compute import build_reward_functions, score_batch
from groupwise.rewards.extract import with_prompt_code

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
SANDBOX = {"timeout_s": 10}
WRONG_BODIES = ["    return x - y\n", "    return sum(operations) < 0\n", "    return text.count(' ') + 1\n"]


def humaneval_rows(fmt: str) -> list[dict]:
    return load_file_rows(DataConfig(task=None, path=str(FIXTURES / f"humaneval.{fmt}"), heldout_fraction=0.0),
                          "train")


def scores(rows: list[dict], completions: list[str], **params) -> list[float]:
    """code_tests over the rows as a step scores them: rendered prompts, the rows' own prompts, their columns."""
    functions = build_reward_functions([RewardSpec(name="code_tests", params=params)], SANDBOX)
    template = DataConfig(task=None, path="x.jsonl", prompt_template="Complete this function:\n{prompt}")
    texts = render_prompts(rows, build_tiny_tokenizer(), template)
    columns = {key: [row[key] for row in rows] for key in rows[0] if key != "prompt"}
    result = score_batch(functions, texts, completions, None, columns, raw_prompts=[row["prompt"] for row in rows])
    return result.total.tolist()


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_body_only_completions_score_as_humaneval_scores_them(fmt):
    rows = humaneval_rows(fmt)
    assert scores(rows, [row["canonical_solution"] for row in rows]) == [1.0, 1.0, 1.0]
    fenced = [f"Here is the body:\n```python\n{row['canonical_solution']}```\n" for row in rows]
    assert scores(rows, fenced) == [1.0, 1.0, 1.0]
    assert scores(rows, WRONG_BODIES) == [0.0, 0.0, 0.0]


def test_whole_functions_are_judged_as_they_are():
    rows = humaneval_rows("jsonl")
    whole = [row["prompt"] + row["canonical_solution"] for row in rows]
    assert scores(rows, whole) == [1.0, 1.0, 1.0]
    renamed = [f"def other(*a):\n    return 0\n\n{row['prompt']}{wrong}" for row, wrong in zip(rows, WRONG_BODIES,
                                                                                          strict=True)]
    assert scores(rows, renamed) == [0.0, 0.0, 0.0]


def test_prepend_prompt_false_judges_the_completion_alone():
    rows = humaneval_rows("jsonl")
    assert scores(rows, [row["canonical_solution"] for row in rows], prepend_prompt=False) == [0.0, 0.0, 0.0]


def test_the_prompt_comes_first_only_when_it_defines_the_missing_entry_point():
    prompt = 'def add(x, y):\n    """Add."""\n'
    assert with_prompt_code(None, "    return x + y\n", prompt, "add") == prompt + "    return x + y\n"
    assert with_prompt_code("def add(x, y):\n    return 0\n", "...", prompt, "add") == "def add(x, y):\n    return 0\n"
    assert with_prompt_code(None, "    return x + y\n", "Write add.", "add") is None  # no code in the prompt
    assert with_prompt_code(None, "    return (x +\n", prompt, "add") is None  # no program with it either
