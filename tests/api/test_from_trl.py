"""docs/from-trl.md's promise: TRL-style reward functions and a conversational dataset run unchanged."""

from __future__ import annotations

import json
import re

import pytest

import groupwise

TINY = ["model.name=tiny-random", "rollout.prompts_per_step=4", "rollout.group_size=4", "rollout.max_new_tokens=6",
        "train.micro_batch_size=8", "train.steps=2", "eval.before_after=false", "log.progress=false",
        "model.dtype=float32", "train.bf16=false", "rollout.dtype=float32", "log.samples_per_step=0"]

# a conversational dataset as TRL takes it: "prompt" is a list of messages, other columns reach the rewards
DATASET = [{"prompt": [{"role": "system", "content": "Answer briefly."},
                       {"role": "user", "content": f"What is {a} + 1?"}],
            "solution": str(a + 1)} for a in range(10)]
SEEN: dict[str, list] = {"prompts": [], "completions": [], "solution": []}


# TRL-style reward functions, written as in TRL's documentation: completions are lists of messages
def format_reward(completions, **kwargs):
    pattern = r"^\d+$"
    contents = [completion[0]["content"] for completion in completions]
    return [1.0 if re.match(pattern, content) else 0.0 for content in contents]


def accuracy_reward(prompts, completions, solution, **kwargs):
    SEEN["prompts"] += prompts
    SEEN["completions"] += completions
    SEEN["solution"] += solution
    return [float(c[0]["content"].strip() == s) for c, s in zip(completions, solution, strict=True)]


def length_reward(completions, completion_ids, **kwargs):
    return [-len(ids) / 10 for ids in completion_ids]


def test_trl_reward_functions_and_conversational_data_unchanged(tmp_path, one_thread):
    run = groupwise.train(None, TINY, dataset=DATASET, rewards=[format_reward, accuracy_reward, length_reward],
                          reward_weights=[0.5, 1.0, 0.1], run_dir=tmp_path / "run")
    for row in (json.loads(line) for line in (run.run_dir / "metrics.jsonl").read_text().splitlines()):
        means = [row[f"reward/{f.__name__}/mean"] for f in (format_reward, accuracy_reward, length_reward)]
        assert row["reward/mean"] == pytest.approx(0.5 * means[0] + 1.0 * means[1] + 0.1 * means[2])  # the weights
        assert means[2] == pytest.approx(-row["completion_len/mean"] / 10)  # completion_ids are the sampled tokens
    # TRL's arguments: each prompt is the row's own message list, each completion one assistant message
    assert SEEN["prompts"] and all(p in [row["prompt"] for row in DATASET] for p in SEEN["prompts"])
    assert all(isinstance(c, list) and c[0]["role"] == "assistant" and isinstance(c[0]["content"], str)
               for c in SEEN["completions"])
    by_prompt = {row["prompt"][1]["content"]: row["solution"] for row in DATASET}
    assert all(by_prompt[p[1]["content"]] == s for p, s in zip(SEEN["prompts"], SEEN["solution"], strict=True))
    result = groupwise.evaluate(run, DATASET[:3], rewards=[accuracy_reward], samples=2, k=[1, 2])
    assert result["problems"] == 3 and "pass@2" in result


def test_standard_format_prompts_are_the_rows_own(tmp_path, one_thread):
    seen: list = []

    def echo(prompts, completions, **kwargs):
        seen.extend(zip(prompts, completions, strict=True))
        return [0.0] * len(completions)

    rows = [{"prompt": f"Say {w}."} for w in ("yes", "no", "maybe", "ok")]
    groupwise.train(None, TINY + ["train.steps=1"], dataset=rows, rewards=[echo], run_dir=tmp_path / "run")
    assert {p for p, _ in seen} <= {row["prompt"] for row in rows}  # not the chat-templated text
    assert all(isinstance(c, str) for _, c in seen)


def test_a_reward_named_in_yaml_gets_the_same_inputs_as_a_callable(tmp_path, one_thread):
    """A user's `file.py:function` reward sees what a Python callable sees: the row's own messages and
    assistant-message completions (not the chat-templated text)."""
    from groupwise.config.load import build_config
    from groupwise.train.loop import training_loop

    module = tmp_path / "my_rewards.py"
    module.write_text("import json\n"
                      f"LOG = {str(tmp_path / 'seen.jsonl')!r}\n"
                      "def spy(prompts, completions, answer, **kwargs):\n"
                      "    with open(LOG, 'a') as out:\n"
                      "        for p, c, a in zip(prompts, completions, answer):\n"
                      "            out.write(json.dumps([p, c, a]) + '\\n')\n"
                      "    return [0.0] * len(completions)\n")
    data = "tests/fixtures/chat.jsonl"
    cfg = build_config(None, [*TINY, "train.steps=1", f"data.path={data}",
                              f'rewards.functions=[{{"name": "{module}:spy"}}]'])
    training_loop(cfg, tmp_path / "run")
    rows = {json.dumps(row["prompt"]): row["answer"] for row in map(json.loads, open(data))}
    seen = [json.loads(line) for line in (tmp_path / "seen.jsonl").read_text().splitlines()]
    assert len(seen) == 4 * 4
    for prompt, completion, answer in seen:
        assert rows[json.dumps(prompt)] == answer  # the row's own message list, with its own answer
        assert completion[0]["role"] == "assistant" and isinstance(completion[0]["content"], str)
