"""Issue 3's training-loop features on tiny-random: presets, dynamic sampling, overlong filtering,
several updates per batch, rollout/trainer mismatch correction, F-GRPO advantages."""

import json
from pathlib import Path

import pytest
import torch

from groupwise.algorithms import PRESETS
from groupwise.config.load import build_config
from groupwise.rollout.completions import Rollout
from groupwise.train.loop import training_loop
from groupwise.train.step import completion_loss_mask, compute_advantages

HELPERS = str(Path(__file__).with_name("reward_helpers.py"))


def _metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").open()]


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_every_preset_trains(preset, tiny_config, tmp_path):
    cfg = tiny_config(f"algorithm.preset={preset}", "rollout.max_new_tokens=9")
    training_loop(cfg, tmp_path / "run")
    rows = _metrics(tmp_path / "run")
    chosen = PRESETS[preset]
    assert len(rows) == 2 and cfg.algorithm.loss == chosen["loss"]
    for row in rows:
        assert (row["ratio_mean"], row["clip_frac_low"], row["clip_frac_high"]) == (1.0, 0.0, 0.0)  # on-policy
        assert ("kl_max" in row) == (chosen["beta"] > 0) and ("sampling_rounds" in row) == chosen["dynamic_sampling"]
        assert ("reward/soft_overlong/mean" in row) == chosen["soft_overlong"]
        # no gradient exactly when nothing is learnable and no KL term pulls: every advantage is 0
        assert (row["grad_norm"] == 0.0) == (row["learnable_fraction"] == 0.0 and chosen["beta"] == 0)
    assert rows[0]["kl"] == 0.0  # the adapter starts at zero: step 1's policy is the reference


def test_dynamic_sampling_keeps_only_groups_with_varied_rewards(tiny_config, tmp_path):
    cfg = tiny_config("algorithm.dynamic_sampling=true", "algorithm.max_sampling_rounds=12",
                      f"rewards.functions=[{{name: '{HELPERS}:half_learnable'}}]", "rollout.max_new_tokens=6")
    training_loop(cfg, tmp_path / "run")
    for row in _metrics(tmp_path / "run"):
        assert row["learnable_fraction"] == 1.0  # every kept group has differing rewards
        assert row["prompts_consumed"] > 4 and row["sampling_rounds"] >= 2  # odd-operand prompts were dropped
        assert row["groups_kept"] >= 4


def test_overlong_filter_masks_truncated_completions():
    mask = torch.tensor([[1, 1, 1], [1, 1, 0], [1, 1, 1]])
    rollout = Rollout(torch.zeros(3, 2), torch.ones(3, 2), torch.zeros(3, 3), mask, torch.zeros(3, 3),
                      torch.tensor([False, True, True]), ["a", "b", "c"], 3)
    assert completion_loss_mask(rollout, False).tolist() == mask.tolist()
    assert completion_loss_mask(rollout, True).tolist() == [[0, 0, 0], [1, 1, 0], [1, 1, 1]]


def test_several_updates_per_batch_move_the_ratio_and_clip(tiny_config, tmp_path):
    cfg = tiny_config("algorithm.num_iterations=3", "algorithm.mini_batches=2", "train.learning_rate=0.05",
                      "lora.enabled=false", "algorithm.eps_low=0.01", "algorithm.eps_high=0.01", "train.steps=3",
                      f"rewards.functions=[{{name: '{HELPERS}:half_learnable'}}]")
    training_loop(cfg, tmp_path / "run")
    rows = _metrics(tmp_path / "run")
    assert any(abs(r["ratio_mean"] - 1.0) > 1e-3 for r in rows)
    assert any(r["clip_frac_low"] + r["clip_frac_high"] > 0 for r in rows)


def test_mismatch_correction_logs_importance_weights(tiny_config, tmp_path):
    cfg = tiny_config("rollout.dtype=bfloat16", "algorithm.importance_sampling=token", "algorithm.is_cap=1.001",
                      f"rewards.functions=[{{name: '{HELPERS}:half_learnable'}}]")
    training_loop(cfg, tmp_path / "run")
    for row in _metrics(tmp_path / "run"):
        assert row["is_weight_mean"] != 1.0 and row["is_weight_max"] <= 1.001 + 1e-6  # bf16 sampler vs fp32 trainer
        assert 0.0 < row["is_frac_capped"] < 1.0


def test_focal_advantages_scale_each_group_by_its_failure_rate():
    cfg = build_config(None, ["algorithm.focal_gamma=1.0"]).algorithm
    rewards = torch.tensor([[1.0, 0.0, 0.0, 0.0], [1.0, 1.0, 1.0, 0.0]])
    # group 0: mean .25, unbiased std .5 -> [1.5, -.5, -.5, -.5]; success rate .25 -> weight .75
    # group 1: mean .75, std .5 -> [.5, .5, .5, -1.5]; success rate .75 -> weight .25
    expected = torch.tensor([[1.125, -0.375, -0.375, -0.375], [0.125, 0.125, 0.125, -0.375]])
    torch.testing.assert_close(compute_advantages(rewards, cfg), expected, atol=1e-3, rtol=0)
    plain = build_config(None, []).algorithm
    torch.testing.assert_close(compute_advantages(rewards, plain)[0], torch.tensor([1.5, -0.5, -0.5, -0.5]),
                               atol=1e-3, rtol=0)


def test_training_with_a_shared_weight_sampler_follows_the_updates(tiny_config, tmp_path):
    # shared: what GPUs use by default; the sampler sees every update without a sync
    cfg = tiny_config("rollout.weights=shared", "lora.enabled=false", "train.learning_rate=0.05",
                      f"rewards.functions=[{{name: '{HELPERS}:half_learnable'}}]", "train.steps=3",
                      "train.seed=1")  # a seed whose first batch has a learnable group: every step updates
    training_loop(cfg, tmp_path / "run")
    rows = _metrics(tmp_path / "run")
    assert len(rows) == 3 and all(r["grad_norm"] > 0 for r in rows)
    # one update per rollout: no old log-probs are recomputed, and the first ratio is exactly 1
    assert rows[0]["ratio_mean"] == pytest.approx(1.0, abs=1e-6)
