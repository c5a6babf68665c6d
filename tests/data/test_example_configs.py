"""examples/configs/{gsm8k,mbpp}.yaml (README's Data section): their data is right and each trains a step."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from conftest import TINY_OVERRIDES  # tests/ is on sys.path (pytest's rootdir conftest)

from groupwise.config.load import build_config
from groupwise.data.prompts import build_messages, render_prompts
from groupwise.data.source import load_rows
from groupwise.rewards import resolve_reward
from groupwise.train.loop import training_loop

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = ["gsm8k", "mbpp"]
# the example model and sizes, swapped for tiny-random and one small step
TINY = [o for o in TINY_OVERRIDES if not o.startswith("data.")] + [
    "train.steps=1", "rollout.prompts_per_step=2", "rollout.group_size=2", "train.micro_batch_size=4",
    "train.threads=1"]


@pytest.fixture
def in_root(monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(ROOT)  # the configs name their data relative to the repository root, as README runs them
    return ROOT


def test_gsm8k_example_answers_add_up(in_root: Path) -> None:
    rows = load_rows(build_config(ROOT / "examples/configs/gsm8k.yaml").data, "train")
    everything = [json.loads(line) for line in (ROOT / "examples/data/gsm8k.jsonl").read_text().splitlines()]
    assert len(rows) == 9 and len(everything) == 12
    for row in everything:
        for expression, value in re.findall(r"<<([^=]+)=([^>]+)>>", row["answer"]):
            assert eval(expression, {}) == float(value), row["answer"]  # noqa: S307 - our own fixture arithmetic
    reward = resolve_reward("answer_match")
    finals = [row["answer"].rsplit("#### ", 1)[1] for row in everything]
    assert reward([], [f"So the answer is\n#### {f}" for f in finals], answer=[r["answer"] for r in everything]
                  ) == [1.0] * 12


def test_mbpp_example_reference_code_passes_its_tests(in_root: Path) -> None:
    cfg = build_config(ROOT / "examples/configs/mbpp.yaml")
    rows = load_rows(cfg.data, "train") + load_rows(cfg.data, "heldout")
    assert len(rows) == 10 and all(len(row["tests"]) == 3 for row in rows)
    reward = resolve_reward("code_tests", {"sandbox": {"timeout_s": 10}})
    scores = reward([], [f"```python\n{row['code']}\n```" for row in rows], tests=[row["tests"] for row in rows])
    assert scores == [1.0] * 10
    user = build_messages(rows[0], cfg.data.prompt_template, None)[-1]["content"]
    assert user.startswith(rows[0]["prompt"]) and rows[0]["tests"][0] in user


@pytest.mark.parametrize("name", CONFIGS)
def test_example_config_trains_a_step(in_root: Path, tmp_path: Path, one_thread, tiny, name: str) -> None:
    cfg = build_config(ROOT / f"examples/configs/{name}.yaml", TINY)
    assert (ROOT / cfg.data.path).resolve() == ROOT / "examples/data" / f"{name}.jsonl"  # relative or resolved
    training_loop(cfg, tmp_path / "run")
    logged = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in logged] == [1]
    samples = [json.loads(line) for line in (tmp_path / "run" / "samples.jsonl").read_text().splitlines()]
    train = render_prompts(load_rows(cfg.data, "train"), tiny[1], cfg.data)  # with the config's template
    assert len(samples) == 2 and {s["rendered_prompt"] for s in samples} <= set(train)
    assert [set(s["reward_per_function"]) for s in samples] == [{f.name for f in cfg.rewards.functions}] * 2


def test_readme_shows_the_example_configs_as_they_are() -> None:
    import yaml

    section = (ROOT / "README.md").read_text().split("## Data", 1)[1].split("\n## ", 1)[0]
    shown = [yaml.safe_load(block) for block in re.findall(r"```yaml\n(.*?)```", section, re.S)]
    for name, snippet in zip(CONFIGS, shown, strict=True):
        config = yaml.safe_load((ROOT / f"examples/configs/{name}.yaml").read_text())
        assert snippet["rewards"] == config["rewards"]
        assert snippet["data"] == {key: config["data"][key] for key in snippet["data"]}
