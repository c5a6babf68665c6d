"""GSM8K-, MBPP-, HumanEval-shaped and chat files (tests/fixtures) in JSONL, CSV and Parquet: each loads,
scores a hand-written correct completion 1.0 and a wrong one 0 with the reward a user would pick, and
trains one step on tiny-random."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from groupwise.config.schema import DataConfig
from groupwise.data.files import load_file_rows
from groupwise.data.prompts import render_prompts
from groupwise.rewards import resolve_reward
from groupwise.train.loop import training_loop

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
COLUMNS = {"gsm8k": {"prompt": "question"}, "mbpp": {"prompt": "text"}, "humaneval": {}, "chat": {}}
FORMATS = {"gsm8k": ("jsonl", "csv", "parquet"), "mbpp": ("jsonl", "csv", "parquet"),
           "humaneval": ("jsonl", "csv", "parquet"), "chat": ("jsonl", "parquet")}
CASES = [(shape, fmt) for shape, formats in FORMATS.items() for fmt in formats]

# hand-written completions per row, in file order: (correct, wrong)
GSM8K = [
    ("3 boxes of 12 make 36 pencils; 36 - 7 = 29.\n#### 29", "3 boxes of 12 make 36 pencils; 36 - 6 = 30.\n#### 30"),
    ("Tuesday: 2,400. Total: 1,200 + 2,400 = 3,600.\n#### 3,600", "Total: 1,200 + 1,200 = 2,400.\n#### 2,400"),
    ("105 / 15 = 7, so she needs 7 days.", "105 / 15 = 6, so she needs 6 days."),
    (r"4 * 4.50 = \boxed{18}", r"4 + 4.50 = \boxed{8.5}"),
    ("<answer>-3</answer>", "<answer>3</answer>"),
]
MBPP = [
    ("def max_of_two(a, b):\n    return max(a, b)", "def max_of_two(a, b):\n    return min(a, b) - 1"),
    ("def reverse_string(s):\n    return ''.join(reversed(s))", "def reverse_string(s):\n    return s + '!'"),
    ("def count_vowels(s):\n    return len([c for c in s.lower() if c in 'aeiou'])",
     "def count_vowels(s):\n    return len([c for c in s if c not in 'aeiou']) + 1"),
    ("def hypotenuse(a, b):\n    return (a ** 2 + b ** 2) ** 0.5", "def hypotenuse(a, b):\n    return a + b"),
]
HUMANEVAL = [
    ("def add(x: int, y: int) -> int:\n    return x + y", "def add(x: int, y: int) -> int:\n    return x - y"),
    ("def below_zero(operations: list) -> bool:\n    total = 0\n    for op in operations:\n        total += op\n"
     "        if total < 0:\n            return True\n    return False",
     "def below_zero(operations: list) -> bool:\n    return sum(operations) < 0"),
    ("def count_words(text: str) -> int:\n    return len(text.split())",
     "def count_words(text: str) -> int:\n    return text.count(' ') + 1"),
]
CHAT = [("17 + 25 = 42", "17 + 25 = 32"), ("72", "81"), ("10 - 3 = 7 apples are left.", "10 + 3 = 13"),
        ("<answer>99</answer>", "<answer>101</answer>")]
REWARDS = {"gsm8k": ["answer_match", "math_equivalence"], "mbpp": ["code_tests"], "humaneval": ["code_tests"],
           "chat": ["answer_match"]}


def _fenced(code: str) -> str:
    return f"Here is the function:\n\n```python\n{code}\n```\n"


COMPLETIONS = {"gsm8k": GSM8K, "chat": CHAT, "mbpp": [tuple(map(_fenced, pair)) for pair in MBPP],
               "humaneval": [tuple(map(_fenced, pair)) for pair in HUMANEVAL]}


def _jsonl(shape: str) -> list[dict]:
    return [json.loads(line) for line in (FIXTURES / f"{shape}.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[tuple[str, str], Path]:
    """The committed JSONL/CSV fixtures, plus Parquet written from the JSONL rows (list columns stay lists)."""
    folder = tmp_path_factory.mktemp("parquet")
    paths = {}
    for shape, fmt in CASES:
        paths[shape, fmt] = FIXTURES / f"{shape}.{fmt}"
        if fmt == "parquet":
            pq.write_table(pa.Table.from_pylist(_jsonl(shape)), folder / f"{shape}.parquet")
            paths[shape, fmt] = folder / f"{shape}.parquet"
    return paths


def _rows(path: Path, shape: str) -> list[dict]:
    return load_file_rows(DataConfig(task=None, path=str(path), columns=COLUMNS[shape], heldout_fraction=0.0),
                          "train")


@pytest.mark.parametrize("shape, fmt", CASES)
def test_fixture_loads_in_standard_form(files, shape: str, fmt: str) -> None:
    rows = _rows(files[shape, fmt], shape)
    assert len(rows) == len(COMPLETIONS[shape])
    if shape == "gsm8k":
        assert rows[1]["prompt"].startswith("A shop sells 1,200 apples") and rows[1]["answer"].endswith("#### 3,600")
    elif shape == "mbpp":
        assert rows[3]["tests"] == ["import math\nassert math.isclose(hypotenuse(3, 4), 5.0)",
                                    "import math\nassert math.isclose(hypotenuse(5, 12), 13.0)"]
        assert rows[1]["tests"][2] == "assert reverse_string(\"it's\") == \"s'ti\""
    elif shape == "humaneval":
        assert len(rows[0]["tests"]) == 1 and rows[0]["tests"][0].rstrip().endswith("check(add)")
    else:
        assert rows[2]["prompt"][-1] == {"role": "user", "content": "I eat 3. How many are left?"}
        assert rows[2]["answer"] == "7"


@pytest.mark.parametrize("shape, fmt", CASES)
def test_correct_scores_one_and_wrong_scores_zero(files, shape: str, fmt: str) -> None:
    rows = _rows(files[shape, fmt], shape)
    columns = {key: [row.get(key) for row in rows] for key in ("answer", "tests") if key in rows[0]}
    for name in REWARDS[shape]:
        params = {"sandbox": {"timeout_s": 10}} if name == "code_tests" else {}
        reward = resolve_reward(name, params)
        correct, wrong = zip(*COMPLETIONS[shape], strict=True)
        for completions, score in ((correct, 1.0), (wrong, 0.0)):
            scored = reward([row["prompt"] for row in rows], list(completions), **columns)
            assert scored == [score] * len(rows), (name, completions)


@pytest.mark.parametrize("shape, fmt", CASES)
def test_trains_one_step_on_tiny_random(tiny_config, tiny, files, tmp_path: Path, one_thread, shape: str,
                                        fmt: str) -> None:
    rewards = ", ".join(f"{{name: {name}}}" for name in REWARDS[shape])
    columns = ", ".join(f"{k}: {v}" for k, v in COLUMNS[shape].items())
    cfg = tiny_config("data.task=null", f"data.path={files[shape, fmt]}", f"data.columns={{{columns}}}",
                      f"rewards.functions=[{rewards}]", "data.heldout_fraction=0", "train.steps=1",
                      "rollout.prompts_per_step=2", "rollout.group_size=2", "train.micro_batch_size=4",
                      "train.threads=1")
    summary = training_loop(cfg, tmp_path / "run")
    logged = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert summary["run_dir"] == str(tmp_path / "run") and [m["step"] for m in logged] == [1]
    samples = [json.loads(line) for line in (tmp_path / "run" / "samples.jsonl").read_text().splitlines()]
    rendered = render_prompts(_rows(files[shape, fmt], shape), tiny[1], cfg.data)  # the file's rows, as mapped
    assert len(samples) == 2 and {s["rendered_prompt"] for s in samples} <= set(rendered)
    assert [set(s["reward_per_function"]) for s in samples] == [set(REWARDS[shape])] * 2


def test_chat_fixture_is_rendered_with_its_own_messages(tiny) -> None:
    from groupwise.data.prompts import render_prompt

    row = _jsonl("chat")[1]
    text = render_prompt(row, tiny[1], system_prompt="ignored: the row has its own system message")
    assert text == "s:You are a careful calculator. Reply with the number only.\nu:What is 9 * 8?\na:"
