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
    # several updates per batch at a high learning rate push some ratios past c = 1.001, never past 1000
    rows = {}
    for name, extra in {"off": [], "never binds": ["algorithm.dual_clip=1000"],
                        "binds": ["algorithm.dual_clip=1.001"]}.items():
        cfg = tiny_config("algorithm.preset=rloo", "algorithm.num_iterations=3", "algorithm.mini_batches=2",
                          "train.learning_rate=0.05", "lora.enabled=false", "train.steps=3",
                          f"rewards.functions=[{{name: '{HELPERS}:half_learnable'}}]", *extra)
        training_loop(cfg, tmp_path / name)
        rows[name] = [json.loads(line) for line in (tmp_path / name / "metrics.jsonl").open()]
    assert all("clip_frac_dual" not in r for r in rows["off"])
    assert [r["clip_frac_dual"] for r in rows["never binds"]] == [0.0, 0.0, 0.0]
    assert [r["loss"] for r in rows["never binds"]] == [r["loss"] for r in rows["off"]]  # a cap that never binds
    binds = [r["clip_frac_dual"] for r in rows["binds"]]
    first = next(i for i, share in enumerate(binds) if share > 0)  # the steps before it trained as without it
    assert [r["loss"] for r in rows["binds"][:first]] == [r["loss"] for r in rows["off"][:first]]
    assert rows["binds"][first]["loss"] != rows["off"][first]["loss"]
