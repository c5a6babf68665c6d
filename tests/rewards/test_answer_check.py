"""The start-up / preflight warning when most gold answers cannot match the chosen answer reward."""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

import pytest
import torch
from rich.console import Console

from groupwise.rewards.answer_check import answer_format_warning, comparable
from groupwise.train.preflight import summarize_preflight

SOLUTION = "She sold 48/2 = 24 clips in May.\nShe sold 48+24 = 72 clips altogether."
FILE = ["data.task=null", "data.path=rows.jsonl"]


@pytest.fixture
def make(tiny_config):
    return lambda *extra: tiny_config(*FILE, *extra)


def test_gsm8k_boxed_and_plain_golds_raise_no_warning(make) -> None:
    rows = [{"prompt": "q", "answer": a} for a in (SOLUTION + "\n#### 72", r"so \boxed{72}", "72", "1,234")]
    assert answer_format_warning(rows, make()) is None


def test_worked_solutions_without_final_answer_are_named_with_a_sample_and_fix(make) -> None:
    rows = [{"prompt": f"How many clips, case {i}?", "answer": SOLUTION} for i in range(3)]
    rows.append({"prompt": "ok", "answer": "72"})
    warning = answer_format_warning(rows, make())
    assert warning is not None and warning.startswith("reward 'answer_match' cannot compare 3 of 4 gold answers")
    assert "How many clips, case 0?" in warning and "She sold 48/2" in warning
    assert "#### N" in warning and "data.columns" in warning and "\n" not in warning
    assert answer_format_warning(rows[:1] + [rows[3]] * 2, make()) is None  # a minority: no warning


def test_extraction_mode_decides_what_can_match() -> None:
    assert comparable("yes", "answer_match", {}) and comparable("yes", "answer_match", {"extract": "tag"})
    assert not comparable("yes", "answer_match", {"extract": "last_number"})
    assert comparable(r"\frac{1}{2}", "math_equivalence", {}) and not comparable("", "math_equivalence", {})
    assert not comparable(None, "answer_match", {})


def test_rows_without_answers_and_other_rewards(make) -> None:
    rows = [{"prompt": "write add", "tests": ["assert add(1, 2) == 3"]}] * 2
    warning = answer_format_warning(rows, make())
    assert warning is not None and "needs an 'answer' column" in warning and "code_tests" in warning
    code = make("rewards.functions=[{name: code_tests}]")
    assert answer_format_warning(rows, code) is None
    maths = make("rewards.functions=[{name: math_equivalence}]")
    assert "reward 'math_equivalence'" in answer_format_warning(rows, maths)


def test_preflight_blames_the_answers_not_truncation(make) -> None:
    """The Found case: with golds no reward could match, --preflight said 'raise rollout.max_new_tokens'."""
    cfg = make()
    total = torch.zeros(4, 2)
    args = (total, total.reshape(-1, 1), ["answer_match"], torch.tensor([8] * 8), torch.tensor([False] * 8), cfg)
    assert "max_new_tokens" in summarize_preflight(*args)["verdict"]
    warning = answer_format_warning([{"prompt": "q", "answer": SOLUTION}], cfg)
    result = summarize_preflight(*args, answer_warning=warning)
    assert result["verdict"] == f"expected learnable fraction 0.00 is low: {warning}"
    assert "max_new_tokens" not in result["verdict"] and not math.isnan(result["reward/mean"])


def test_training_start_warns(tmp_path: Path, monkeypatch, one_thread, make) -> None:
    from groupwise.train.loop import training_loop

    monkeypatch.chdir(tmp_path)
    Path("rows.jsonl").write_text("".join(json.dumps({"prompt": f"Clips [bold]{i}[/bold]?", "answer": SOLUTION})
                                          + "\n" for i in range(6)))
    out = io.StringIO()
    training_loop(make("train.steps=1", "rollout.prompts_per_step=2", "rollout.group_size=2", "train.threads=1",
               "train.micro_batch_size=4"),
          tmp_path / "run", console=Console(file=out, width=400))
    assert "warning: reward 'answer_match' cannot compare 5 of 5 gold answers" in out.getvalue()
    assert "[bold]" in out.getvalue()  # the sample row is printed as it is, not as Rich markup


def test_preflight_command_names_the_answers(tmp_path: Path, monkeypatch) -> None:
    from typer.testing import CliRunner

    from groupwise.cli.main import app

    monkeypatch.chdir(tmp_path)
    Path("rows.jsonl").write_text("".join(json.dumps({"prompt": f"Clips {i}?", "answer": SOLUTION}) + "\n"
                                          for i in range(6)))
    sets = ["model.name=tiny-random", "data.task=null", "data.path=rows.jsonl", "rollout.group_size=2",
            "rollout.max_new_tokens=4", "train.micro_batch_size=2", "train.threads=1"]
    done = CliRunner().invoke(app, ["train", "--preflight", *[a for s in sets for a in ("--set", s)]],
                              terminal_width=400)
    assert done.exit_code == 0, done.output
    output = " ".join(done.output.split())
    assert "is low: reward 'answer_match' cannot compare 5 of 5 gold answers" in output
    assert "max_new_tokens" not in output
