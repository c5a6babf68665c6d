"""`groupwise data check`: the first rows as the model sees them, the gold each reward reads, the parsed tests,
and the data's reference solutions scored, so that a broken reward shows before any training (issue 28)."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from groupwise.cli.main import app

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
TINY = ["model.name=tiny-random", "data.task=null", "data.heldout_fraction=0"]


def check(*sets: str, rows: int = 1) -> list[str]:
    args = ["data", "check", "--rows", str(rows), *[a for item in (*TINY, *sets) for a in ("--set", item)]]
    done = CliRunner().invoke(app, args)
    assert done.exit_code == 0, done.output
    return done.stdout.splitlines()


def test_gsm8k_rows_show_the_prompt_the_raw_answer_and_the_gold_read_from_it():
    lines = check(f"data.path={FIXTURES / 'gsm8k.jsonl'}", "data.columns={prompt: question}", rows=2)
    assert lines[:6] == [
        f"data: 5 training rows from {FIXTURES / 'gsm8k.jsonl'}; rewards: answer_match",
        "row 1, the prompt as the model sees it:",
        "    u:Tom has 3 boxes with 12 pencils in each box. He gives away 7 pencils. How many pencils does he have "
        "left?",
        "    a:",
        "  answer: 'Tom has 3 * 12 = <<3*12=36>>36 pencils.\\nAfter giving away 7 he has 36 - 7 = <<36-7=29>>29 "
        "pencils.\\n#### 29'",
        "  gold as answer_match reads it: '29'"]
    assert lines[-1] == "  gold as answer_match reads it: '3600'"  # `#### 3,600`


def test_mbpp_rows_show_their_tests_and_the_reference_code_scores_one():
    lines = check(f"data.path={FIXTURES / 'mbpp.jsonl'}", "data.columns={prompt: text}",
                  "rewards.functions=[{name: code_tests}]")
    assert lines[4:] == ["  tests (3):", "    - assert max_of_two(1, 2) == 2", "    - assert max_of_two(-1, -5) == -1",
                         "    - assert max_of_two(7, 7) == 7",
                         "reference solutions (column 'code', first 4 rows) score: code_tests 1.00"]


def test_a_broken_reward_shows_as_reference_solutions_scoring_zero():
    """HumanEval's canonical bodies judged without their prompt: the command says so on one unwrapped line, exit 1."""
    args = ["data", "check", "--rows", "1", *[a for item in (*TINY, f"data.path={FIXTURES / 'humaneval.jsonl'}",
            "rewards.functions=[{name: code_tests, params: {prepend_prompt: false}}]") for a in ("--set", item)]]
    done = CliRunner().invoke(app, args)
    assert done.exit_code == 1, done.output  # a check that found a misfit fails, so a script can gate on it
    assert done.stdout.splitlines()[-1] == ("reference solutions (column 'canonical_solution', first 3 rows) score: "
                                            "code_tests 0.00")
    assert done.stderr == ("warning: reference solutions (column 'canonical_solution') score 0.00 with code_tests: "
                           "the reward, the tests or data.columns do not fit the data\n")  # 137 characters, one line
    fixed = check(f"data.path={FIXTURES / 'humaneval.jsonl'}", "rewards.functions=[{name: code_tests}]")
    assert fixed[-1] == "reference solutions (column 'canonical_solution', first 3 rows) score: code_tests 1.00"
