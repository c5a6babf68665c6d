"""Group advantages, success rates and F-GRPO focal weights against hand-computed numbers."""

import math

import pytest
import torch

from groupwise.algorithms import focal_advantages, focal_weights, group_advantages, success_rate
from groupwise.errors import GroupwiseError

NAN = float("nan")


def close(actual: torch.Tensor, expected: list, tol: float = 1e-5) -> None:
    torch.testing.assert_close(actual, torch.tensor(expected, dtype=actual.dtype), atol=tol, rtol=tol)


def test_unbiased_group_std():
    # mean .25; squared deviations .5625 + 3 * .0625 = .75; / (4 - 1) = .25; std .5 -> (r - .25) / .5
    adv = group_advantages(torch.tensor([[1.0, 0.0, 0.0, 0.0]]), eps=1e-8)
    close(adv, [[1.5, -0.5, -0.5, -0.5]])


def test_group_size_two_and_eps():
    # mean .5, deviations +-.5, var (.25 + .25) / 1 = .5, std .70711
    close(group_advantages(torch.tensor([[1.0, 0.0]]), eps=1e-8), [[0.70711, -0.70711]])
    # eps .5: .5 / (.70711 + .5) = .41421
    close(group_advantages(torch.tensor([[1.0, 0.0]]), eps=0.5), [[0.41421, -0.41421]])


def test_all_equal_group_is_zero():
    adv = group_advantages(torch.tensor([[3.0, 3.0, 3.0], [0.0, 0.0, 0.0]]))
    close(adv, [[0.0, 0.0, 0.0], [0.0, 0.0, 0.0]])


def test_nan_rewards_left_out_and_zero():
    # row 0: valid [1, 0] as in the group-size-two case; row 1: one valid value -> std 0, advantage 0;
    # row 2: nothing valid
    rewards = torch.tensor([[1.0, NAN, 0.0], [NAN, 2.0, NAN], [NAN, NAN, NAN]])
    for scale in ("group", "batch", "none"):
        adv = group_advantages(rewards, scale=scale, eps=1e-8)
        assert torch.isfinite(adv).all(), scale
        assert adv[0, 1] == 0 and (adv[1:] == 0).all(), scale
    close(group_advantages(rewards, eps=1e-8)[0], [0.70711, 0.0, -0.70711])


def test_batch_group_none_scaling():
    rewards = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    # group means .5 and 1 -> centred [[.5, -.5], [0, 0]]
    close(group_advantages(rewards, scale="none"), [[0.5, -0.5], [0.0, 0.0]])
    # group std of row 0 is .70711
    close(group_advantages(rewards, scale="group", eps=1e-8), [[0.70711, -0.70711], [0.0, 0.0]])
    # batch values 1, 0, 1, 1: mean .75, squared deviations .0625 + .5625 + .0625 + .0625 = .75, / 3 = .25,
    # std .5 -> centred / .5
    close(group_advantages(rewards, scale="batch", eps=1e-8), [[1.0, -1.0], [0.0, 0.0]])


def test_batch_scaling_skips_nan():
    # group means 1 and 1; batch valid values 1, 0, 2: mean 1, var (0 + 1 + 1) / 2 = 1, std 1
    rewards = torch.tensor([[1.0, NAN], [0.0, 2.0]])
    close(group_advantages(rewards, scale="batch", eps=1e-8), [[0.0, 0.0], [-1.0, 1.0]])


def test_unknown_scale():
    with pytest.raises(GroupwiseError, match="scale"):
        group_advantages(torch.zeros(1, 2), scale="std")


def test_success_rate():
    rewards = torch.tensor([[1.0, 0.0, 1.0, NAN], [0.5, 0.2, 0.9, 0.0], [NAN, NAN, NAN, NAN]])
    # default threshold 1.0: row 0 -> 2 of 3 valid; row 1 -> none; row 2 -> no valid sample -> 0
    close(success_rate(rewards), [2 / 3, 0.0, 0.0])
    # threshold .5: row 0 -> 2/3, row 1 -> .5 and .9 -> 2/4
    close(success_rate(rewards, threshold=0.5), [2 / 3, 0.5, 0.0])


def test_focal_weights():
    p = torch.tensor([0.5, 1.0, 0.25, 0.0])
    close(focal_weights(p, 1.0), [0.5, 0.0, 0.75, 1.0])
    close(focal_weights(p, 0.0), [1.0, 1.0, 1.0, 1.0])  # 0 ** 0 == 1 for p == 1
    close(focal_weights(p, 2.0), [0.25, 0.0, 0.5625, 1.0])
    with pytest.raises(GroupwiseError):
        focal_weights(p, -1.0)


def test_focal_advantages():
    rewards = torch.tensor([[1.0, 0.0, 0.0, 0.0], [1.0, 1.0, 1.0, 0.0]])
    adv = group_advantages(rewards, eps=1e-8)
    # success rates .25 and .75; gamma 2: (.75)^2 = .5625, (.25)^2 = .0625
    scaled = focal_advantages(adv, rewards, gamma=2.0)
    close(scaled[0], [1.5 * 0.5625, -0.5 * 0.5625, -0.5 * 0.5625, -0.5 * 0.5625])
    close(scaled[1], [0.5 * 0.0625, 0.5 * 0.0625, 0.5 * 0.0625, -1.5 * 0.0625])
    # threshold above every reward: success 0 -> weights 1
    close(focal_advantages(adv, rewards, gamma=2.0, threshold=2.0), adv.tolist())
    assert not math.isnan(float(scaled.sum()))
