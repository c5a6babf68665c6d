"""Issue 16 in the trainer: the leave-one-out baseline reaches the advantages, dual-clip's stat is logged."""

import json
from pathlib import Path

import torch

from groupwise.config.load import build_config
from groupwise.train.loop import training_loop
from groupwise.train.step import compute_advantages

HELPERS = str(Path(__file__).with_name("reward_helpers.py"))


def test_rloo_preset_advantages():
    # [1, 0, 0, 0]: leave-one-out [1, -1/3, -1/3, -1/3], no std division; [1, 1, 1, 0]: [1/3, 1/3, 1/3, -1]
    cfg = build_config(None, ["algorithm.preset=rloo"]).algorithm
    rewards = torch.tensor([[1.0, 0.0, 0.0, 0.0], [1.0, 1.0, 1.0, 0.0]])
    expected = torch.tensor([[1.0, -1 / 3, -1 / 3, -1 / 3], [1 / 3, 1 / 3, 1 / 3, -1.0]])
    torch.testing.assert_close(compute_advantages(rewards, cfg), expected)


def test_dual_clip_logged_in_training(tiny_config, tmp_path, one_thread):
    # several updates per batch at a high learning rate push some ratios past c = 1.001
    cfg = tiny_config("algorithm.preset=rloo", "algorithm.dual_clip=1.001", "algorithm.num_iterations=3",
                      "algorithm.mini_batches=2", "train.learning_rate=0.05", "lora.enabled=false",
                      "train.steps=3", f"rewards.functions=[{{name: '{HELPERS}:half_learnable'}}]")
    training_loop(cfg, tmp_path / "run")
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").open()]
    assert len(rows) == 3 and all(0.0 <= r["clip_frac_dual"] <= 1.0 for r in rows)
    assert any(r["clip_frac_dual"] > 0 for r in rows)
