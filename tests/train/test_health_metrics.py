"""Training-health metrics: the largest per-token KL and the sampler/trainer gap, by hand and on tiny-random."""

import json
import math
from pathlib import Path

import pytest
import torch

from groupwise.train.health import HealthTokens, combined_health, health_metrics, health_parts
from groupwise.train.loop import training_loop

HELPERS = str(Path(__file__).with_name("reward_helpers.py"))
LN2, LN3 = math.log(2.0), math.log(3.0)
TRAIN = torch.tensor([-1.0, -2.0, -0.5, -3.0])
SAMPLER = torch.tensor([-1.0, -1.5, -0.5 - LN3, -3.2])  # train - sampler = 0, -.5, ln 3, .2
REF = torch.tensor([-1.0 + LN2, -2.0, -0.5, 0.0])  # ref - train = ln 2, 0, 0, 3


def test_health_metrics_by_hand():
    m = health_metrics(TRAIN, SAMPLER, REF, kl_estimator="k3", is_cap=2.0)
    assert m["sampler_gap_max"] == pytest.approx(LN3)  # 1.0986
    assert m["sampler_gap_mean"] == pytest.approx((0 + 0.5 + LN3 + 0.2) / 4)  # .44966
    # ratios exp(train - sampler) = 1, .607, 3, 1.221: only the 3 is above the cap 2
    assert m["is_would_cap_frac"] == pytest.approx(0.25)
    # k3 = e^r - r - 1 = .30685, 0, 0, e^3 - 4 = 16.0855: the max is the r = 3 token
    assert m["kl_max"] == pytest.approx(math.exp(3) - 4, rel=1e-5)
    assert m["ref_log_ratio_max"] == pytest.approx(3.0)
    assert health_metrics(TRAIN, SAMPLER, REF, kl_estimator="k3_clamped", is_cap=3.5)["kl_max"] == 10.0
    assert health_metrics(TRAIN, SAMPLER, REF, is_cap=3.5)["is_would_cap_frac"] == 0.0
    assert "kl_max" not in health_metrics(TRAIN, SAMPLER)  # beta 0: no reference
    assert health_metrics(torch.zeros(0), torch.zeros(0)) == {}


def test_health_tokens_leave_out_masked_positions():
    tokens = HealthTokens()
    mask = torch.tensor([[1, 1, 0], [1, 1, 0]])
    big = torch.full((2, 1), 50.0)  # a masked position holding an absurd log-prob must not count
    tokens.add(mask, torch.cat([TRAIN.view(2, 2), big], 1), torch.cat([SAMPLER.view(2, 2), -big], 1),
               torch.cat([REF.view(2, 2), big], 1))
    assert tokens.metrics("k3", 2.0) == health_metrics(TRAIN, SAMPLER, REF)


def test_shares_of_the_tokens_combine_into_the_metrics_of_all_of_them():  # what two ranks log
    shares = [health_parts(TRAIN[:1], SAMPLER[:1], REF[:1], "k3", 2.0),
              health_parts(TRAIN[1:], SAMPLER[1:], REF[1:], "k3", 2.0),
              health_parts(torch.zeros(0), torch.zeros(0), None, "k3", 2.0)]  # a rank without tokens this step
    assert shares[0] == {"tokens": 1, "sampler_gap_max": 0.0, "gap_sum": 0.0, "capped": 0.0,
                         "kl_max": pytest.approx(2 - LN2 - 1), "ref_log_ratio_max": pytest.approx(LN2)}
    assert combined_health(shares) == pytest.approx(health_metrics(TRAIN, SAMPLER, REF))
    assert combined_health(shares[2:]) == {}


def _rows(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").open()]


def test_health_metrics_in_a_tiny_run(tiny_config, tmp_path):
    reward = f"rewards.functions=[{{name: '{HELPERS}:half_learnable'}}]"
    fp32 = tiny_config(reward, "algorithm.beta=0.1", "train.learning_rate=0.05", "train.seed=1")
    training_loop(fp32, tmp_path / "fp32")
    rows = _rows(tmp_path / "fp32")
    # step 1: the LoRA B matrices are 0, so policy == reference on every token
    assert rows[0]["kl_max"] == 0.0 and rows[0]["ref_log_ratio_max"] == 0.0
    assert rows[1]["kl_max"] > 0 and rows[1]["kl_max"] >= rows[1]["kl"]  # a max over tokens >= their mean
    for row in rows:  # a float32 sampler scores its tokens as the float32 trainer does
        assert row["sampler_gap_max"] < 1e-4 and row["is_would_cap_frac"] == 0.0
        assert row["sampler_gap_mean"] <= row["sampler_gap_max"]
    bf16 = tiny_config(reward, "rollout.dtype=bfloat16", "algorithm.is_cap=1.001")
    training_loop(bf16, tmp_path / "bf16")
    for row in _rows(tmp_path / "bf16"):  # a bf16 sampler copy does not
        assert row["sampler_gap_max"] > 1e-3 and 0.0 < row["sampler_gap_mean"] < row["sampler_gap_max"]
        assert 0.0 < row["is_would_cap_frac"] < 1.0
