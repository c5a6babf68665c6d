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


DEFAULT_SYSTEM_TEMPLATE = (  # like SmolLM2's: a system turn of its own when the conversation has none
    "{% if messages[0]['role'] != 'system' %}s:Be a helpful bot.\n{% endif %}"
    "{% for m in messages %}{{ m['role'][0] }}:{{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}a:{% endif %}")


def test_samples_record_the_gold_each_reward_read_and_the_template_note_comes_once(tiny_config, tmp_path,
                                                                                  one_thread):
    import io
    from pathlib import Path

    from rich.console import Console

    from groupwise.train.inputs import TrainInputs

    gsm8k = Path(__file__).resolve().parents[1] / "fixtures" / "gsm8k.jsonl"
    cfg = tiny_config("data.task=null", f"data.path={gsm8k}", "data.columns={prompt: question}",
                      "data.heldout_fraction=0", "rewards.functions=[{name: answer_match}, {name: math_equivalence}]",
                      "train.steps=2", "rollout.prompts_per_step=2", "rollout.group_size=2",
                      "train.micro_batch_size=4", "log.samples_per_step=2")
    model, tokenizer = build_tiny_random(seed=0)
    tokenizer.chat_template = DEFAULT_SYSTEM_TEMPLATE
    out = io.StringIO()
    training_loop(cfg, tmp_path / "run", console=Console(file=out, width=400),
                  inputs=TrainInputs(model=model, tokenizer=tokenizer))
    golds = {"12 pencils": "29", "1,200 apples": "3600", "15 pages": "7", "$4.50": "18", "5 degrees": "-3"}
    records = [json.loads(line) for line in (tmp_path / "run" / "samples.jsonl").read_text().splitlines()]
    assert len(records) == 4
    for record in records:
        gold = next(value for key, value in golds.items() if key in record["prompt"])
        assert record["gold"] == {"answer_match": gold, "math_equivalence": gold}, record["answer"]  # after ####
        assert record["rendered_prompt"].startswith("s:Be a helpful bot.\n")
    notes = [line for line in out.getvalue().splitlines() if line.startswith("note:")]
    assert notes == ["note: the chat template adds its default system prompt 'Be a helpful bot.' to prompts without "
                     "one; set data.system_prompt to write your own, or data.chat_template: false for plain text "
                     "(docs/from-trl.md)"]
