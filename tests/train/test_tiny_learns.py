"""End to end on tiny-random: a reward for emitting one particular token must clearly rise."""

import json

from groupwise.config.load import build_config
from groupwise.train.loop import training_loop


def test_reward_for_a_token_rises_over_a_few_dozen_steps(tmp_path):
    cfg = build_config(None, [
        "model.name=tiny-random", "lora.enabled=false", "rollout.prompts_per_step=4", "rollout.group_size=8",
        "rollout.max_new_tokens=8", "train.micro_batch_size=32", "train.steps=30", "train.learning_rate=3e-3",
        "eval.before_after=false", "log.progress=false", "data.train_size=64",
        "rewards.functions=[{name: format_regex, params: {pattern: '7'}}]",
        "model.dtype=float32", "train.bf16=false", "rollout.dtype=float32",
    ])
    training_loop(cfg, tmp_path / "run")
    rewards = [json.loads(line)["reward/mean"] for line in (tmp_path / "run" / "metrics.jsonl").open()]
    first, last = sum(rewards[:5]) / 5, sum(rewards[-5:]) / 5
    assert len(rewards) == 30
    assert first < 0.35 and last > first + 0.4, rewards
    assert (tmp_path / "run" / "final" / "model.safetensors").exists()
