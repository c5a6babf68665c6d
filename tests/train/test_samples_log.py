"""samples.jsonl and the report show what the model saw, what it was scored against, and each reward (issue 12)."""

from __future__ import annotations

import json

import pytest

from groupwise.data.prompts import render_prompt
from groupwise.models.tiny import build_tiny_random
from groupwise.report.run_report import build_report
from groupwise.train.loop import training_loop

TESTS = ["assert add(1, 2) == 3", "assert add(0, 0) == 0"]


@pytest.fixture
def code_rows(tmp_path):
    path = tmp_path / "code.jsonl"
    path.write_text("".join(json.dumps({"prompt": f"Write add (case {i}).", "tests": TESTS}) + "\n"
                            for i in range(8)))
    return path


def test_samples_show_the_rendered_prompt_the_tests_and_each_reward(tiny_config, tmp_path, code_rows, one_thread):
    rewards = "[{name: format_regex, params: {pattern: '[a-m]'}}, {name: format_regex, weight: 0.5, params: " \
              "{pattern: '[n-z]'}}]"
    cfg = tiny_config(f"data.path={code_rows}", "data.heldout_fraction=0", "data.system_prompt=Be brief.",
                      f"rewards.functions={rewards}", "train.steps=1", "log.samples_per_step=2")
    run = tmp_path / "run"
    training_loop(cfg, run)
    records = [json.loads(line) for line in (run / "samples.jsonl").read_text().splitlines()]
    assert len(records) == 2
    _, tokenizer = build_tiny_random(seed=0)
    for record in records:
        row = {"prompt": record["prompt"]}
        assert record["rendered_prompt"] == render_prompt(row, tokenizer, system_prompt="Be brief.")
        assert "Be brief." in record["rendered_prompt"]
        assert record["tests"] == TESTS and record["answer"] is None
        each = record["reward_per_function"]
        assert list(each) == ["format_regex", "format_regex_1"]
        for i, total in enumerate(record["rewards"]):
            assert total == pytest.approx(each["format_regex"][i] + 0.5 * each["format_regex_1"][i])
    page = build_report(run, tmp_path / "report").read_text()
    assert "Be brief." in page and "assert add(1, 2) == 3" in page and "format_regex_1" in page
