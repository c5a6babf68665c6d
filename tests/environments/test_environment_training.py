"""Training in an environment end to end: a class written as TRL's docs show trains unchanged (tool calls,
`environments=` for the reward, metrics, samples, report, eval), and a run with episodes resumes exactly."""

from __future__ import annotations

import json

import pytest
import yaml
from conftest import TINY_OVERRIDES

import groupwise
import groupwise.rollout.engines as engines
from groupwise.models.tiny import build_tiny_tokenizer
from groupwise.report.run_report import build_report
from groupwise.train.metrics import read_metrics

pytestmark = pytest.mark.usefixtures("one_thread")
ENV_URL = "https://my-env.example"


class MyClient:  # stands in for the remote client TRL's example captures from the enclosing scope
    def __init__(self, base_url: str) -> None:
        self.base_url = base_url


# ---- exactly TRL's documented pattern (docs/source/openenv.md, "Tips for environment classes") ----
class MyEnv:
    def __init__(self):
        self.client = MyClient(base_url=ENV_URL)  # captured from enclosing scope
        self.reward = 0.0

    def reset(self, **kwargs) -> str | None:
        self.reward = 0.0
        return "Initial observation for the model"

    def my_tool(self, arg1: str, arg2: int) -> str:
        """
        Description of what this tool does.

        Args:
            arg1: Description of arg1
            arg2: Description of arg2

        Returns:
            The result message.
        """
        self.reward = 1.0
        return "Tool result"


def reward_func(environments, **kwargs) -> list[float]:
    return [env.reward for env in environments]
# ---- end of TRL's pattern ----


CALL = '<tool_call>{"name": "my_tool", "arguments": {"arg1": "x", "arg2": 2}}</tool_call>'


def script(context: str, sample: int) -> str:
    """Even samples call the tool, then answer; odd ones answer at once."""
    return "done" if "t:" in context or sample % 2 else CALL


@pytest.fixture
def scripted_fast_engine(monkeypatch, scripted_engine):
    monkeypatch.setitem(engines.ENGINES, "fast", lambda model, rollout: scripted_engine(build_tiny_tokenizer(),
                                                                                        script))


def test_a_trl_environment_class_trains_unchanged(tmp_path, scripted_fast_engine):
    rows = [{"prompt": [{"role": "user", "content": f"Try the tool ({i})."}]} for i in range(16)]
    run = groupwise.train(None, TINY_OVERRIDES + ["train.steps=2", "log.samples_per_step=1",
                                                  "rollout.max_new_tokens=96", "train.learning_rate=0.01"],
                          dataset=rows, rewards=[reward_func], environment=MyEnv, run_dir=tmp_path / "run")
    metrics = read_metrics(run.run_dir)
    assert [(m["env/turns_mean"], m["env/tool_calls_mean"], m["env/tool_errors"], m["reward/mean"])
            for m in metrics] == [(1.5, 0.5, 0.0, 0.5)] * 2
    assert all(m["grad_norm"] > 0 and m["learnable_fraction"] == 1.0 for m in metrics)
    sample = json.loads((run.run_dir / "samples.jsonl").read_text().splitlines()[0])
    called, answered = sample["messages"][0], sample["messages"][1]
    assert [m["role"] for m in called] == ["system", "user", "assistant", "tool", "assistant"]
    assert called[1]["content"].endswith(").Initial observation for the model")  # reset's string, TRL's rule
    assert called[2:] == [{"role": "assistant", "content": CALL},
                          {"role": "tool", "name": "my_tool", "content": "Tool result"},
                          {"role": "assistant", "content": "done"}]
    assert [m["role"] for m in answered] == ["system", "user", "assistant"] and sample["rewards"][:2] == [1.0, 0.0]
    config = yaml.safe_load((run.run_dir / "config.yaml").read_text())
    assert config["environment"]["path"] == "test_environment_training:MyEnv"

    page = build_report(run.run_dir).read_text()
    assert "Episodes (one per step)" in page and page.count("<summary>step ") == 2 and "Tool result" in page

    result = groupwise.evaluate(run, samples=2, k=[1, 2], problems=3)
    assert (result["greedy_accuracy"], result["pass@1"], result["pass@2"]) == (1.0, 0.5, 1.0)


def test_a_run_in_an_environment_resumes_as_if_never_stopped(tmp_path):
    overrides = TINY_OVERRIDES + ["environment.path=tests/environments/env_helpers.py:TwoTurns",
                                  "rollout.max_new_tokens=4", "log.samples_per_step=4", "train.learning_rate=0.01"]
    straight = groupwise.train(None, overrides, run_dir=tmp_path / "straight")
    groupwise.train(None, overrides, run_dir=tmp_path / "resumed", on_step=lambda step, metrics: step < 1)
    resumed = groupwise.train(None, [], run_dir=tmp_path / "resumed", resume=True)
    timeless = lambda rows: [{k: v for k, v in m.items() if not k.endswith("_s") and k != "tokens_per_s"}  # noqa: E731
                             for m in rows]
    assert timeless(read_metrics(resumed.run_dir)) == timeless(read_metrics(straight.run_dir))
    assert (resumed.run_dir / "samples.jsonl").read_text() == (straight.run_dir / "samples.jsonl").read_text()
    assert read_metrics(straight.run_dir)[-1]["env/turns_mean"] == 2.0
