"""Issue 16: dual-clip PPO and the leave-one-out (RLOO) baseline against hand-computed numbers.

Dual-clip batch: 3 sequences x 5 tokens, c = 4, eps 0.2 (so 1 - eps_low = .8), ratios set as exp(log r):
    sequence 0, A = -1: r = [.5, 1, 2, 4, 8]    all valid
    sequence 1, A = +2: r = [8, 1, -, -, -]     2 valid
    sequence 2, A =  0: r = [8, 1, -, -, -]     2 valid
"""

import pytest
import torch

from groupwise.algorithms import dual_clip_cap, group_advantages, leave_one_out, policy_loss
from groupwise.config.load import build_config
from groupwise.errors import GroupwiseError

NAN = float("nan")
RATIOS = [[0.5, 1.0, 2.0, 4.0, 8.0], [8.0, 1.0, 1.0, 1.0, 1.0], [8.0, 1.0, 1.0, 1.0, 1.0]]
MASK = [[1, 1, 1, 1, 1], [1, 1, 0, 0, 0], [1, 1, 0, 0, 0]]
ADV = [-1.0, 2.0, 0.0]


def batch():
    logp = torch.log(torch.tensor(RATIOS, dtype=torch.float64)).requires_grad_(True)
    return logp, torch.zeros(3, 5, dtype=torch.float64), torch.tensor(ADV, dtype=torch.float64), torch.tensor(MASK)


def close(actual: torch.Tensor, expected: list, tol: float = 1e-6) -> None:
    torch.testing.assert_close(actual, torch.tensor(expected, dtype=actual.dtype), atol=tol, rtol=tol)


# ---- dual clip --------------------------------------------------------------------------------------------
# sequence 0 (A = -1): clip loss -A max(r, .8) = [.8, 1, 2, 4, 8]; the cap -A c = 4 holds only at r 8 -> 4
# sequence 1 (A = 2):  -min(2r, 2 clip(r)) = [-2.4, -2]  (unchanged: A >= 0)
# sequence 2 (A = 0):  [0, 0]                           (unchanged, even at r 8)
# token-mean over 9 valid tokens: (.8 + 1 + 2 + 4 + 4 - 2.4 - 2) / 9 = 7.4 / 9; without the cap 11.4 / 9


def test_dual_clip_value_and_stat():
    logp, old, adv, mask = batch()
    loss, stats = policy_loss(logp, old, adv, mask, agg="token-mean", dual_clip=4.0)
    assert float(loss.detach()) == pytest.approx(7.4 / 9)
    assert stats["clip_frac_dual"] == pytest.approx(1 / 9)  # r 8 with A < 0; r 4 sits on the cap, not over it
    plain, plain_stats = policy_loss(logp, old, adv, mask, agg="token-mean")
    assert float(plain) == pytest.approx(11.4 / 9) and "clip_frac_dual" not in plain_stats


def test_dual_clip_gradient():
    # d(-A r)/d logp = -A r on live tokens, / 9 for token-mean. Sequence 0: r .5 is held by the lower clip
    # (loss -A .8, constant), r 8 by the cap (constant): 0; r 4 == c keeps its gradient 4 / 9.
    # Sequence 1: r 8 is clipped high (A > 0): 0; r 1: -2 / 9. Sequence 2: A = 0 -> 0.
    logp, old, adv, mask = batch()
    policy_loss(logp, old, adv, mask, agg="token-mean", dual_clip=4.0)[0].backward()
    close(logp.grad, [[0.0, 1 / 9, 2 / 9, 4 / 9, 0.0], [0.0, -2 / 9, 0, 0, 0], [0.0] * 5])


def test_dual_clip_seq_mean_token_mean():
    # sequence means: (.8 + 1 + 2 + 4 + 4) / 5 = 2.36, -4.4 / 2 = -2.2, 0 -> (2.36 - 2.2 + 0) / 3
    logp, old, adv, mask = batch()
    loss, _ = policy_loss(logp, old, adv, mask, dual_clip=4.0)
    assert float(loss.detach()) == pytest.approx(0.16 / 3)


def test_dual_clip_cap_exactly_at_c():
    # the pure function on exact ratios: A = -2, c = 3; r 3 equals the cap (-A c = 6) and is left alone
    ratio = torch.tensor([2.9, 3.0, 3.1, 3.1, 3.1])
    adv = torch.tensor([-2.0, -2.0, -2.0, 0.0, 1.0])
    loss = -adv * ratio
    capped, held = dual_clip_cap(loss, ratio, adv, 3.0)
    close(capped, [5.8, 6.0, 6.0, 0.0, -3.1])
    assert held.tolist() == [False, False, True, False, False]


def test_dual_clip_bad_values_and_other_losses():
    logp, old, adv, mask = batch()
    for c in (1.0, 0.5, -3.0):
        with pytest.raises(GroupwiseError, match="dual_clip must be > 1"):
            policy_loss(logp, old, adv, mask, dual_clip=c)
    for kind in ("cispo", "gspo"):
        with pytest.raises(GroupwiseError, match="clip loss only"):
            policy_loss(logp, old, adv, mask, kind=kind, dual_clip=3.0)


def test_dual_clip_config_key():
    assert build_config(None, ["algorithm.dual_clip=3.0"]).algorithm.dual_clip == 3.0
    assert build_config(None, []).algorithm.dual_clip is None
    with pytest.raises(GroupwiseError, match="algorithm.dual_clip.*greater than 1"):
        build_config(None, ["algorithm.dual_clip=1.0"])
    with pytest.raises(GroupwiseError, match="dual_clip applies to the clip loss only"):
        build_config(None, ["algorithm.preset=cispo", "algorithm.dual_clip=3.0"])


# ---- leave-one-out baseline -------------------------------------------------------------------------------


def test_leave_one_out_values():
    # [1, 0, 0, 0]: 1 - 0 = 1; 0 - 1/3 = -1/3 (three times). [1, 0]: 1 - 0, 0 - 1
    close(leave_one_out(torch.tensor([[1.0, 0.0, 0.0, 0.0]])), [[1.0, -1 / 3, -1 / 3, -1 / 3]])
    close(group_advantages(torch.tensor([[1.0, 0.0]]), scale="none", baseline="leave_one_out"), [[1.0, -1.0]])
    # equal rewards -> 0; a full group's LOO advantage is G / (G - 1) times the mean-centred one
    rewards = torch.tensor([[3.0, 3.0, 3.0], [0.2, 0.5, 1.1]])
    loo = group_advantages(rewards, scale="none", baseline="leave_one_out")
    close(loo, (group_advantages(rewards, scale="none") * 1.5).tolist())
    close(loo[0], [0.0, 0.0, 0.0])


def test_leave_one_out_nan_and_single_valid_sample():
    # row 0 valid [1, 0, 1]: 1 - (0 + 1)/2 = .5, NaN -> 0, 0 - 1 = -1, .5
    # row 1: one valid reward -> 0; row 2: no valid reward -> 0
    rewards = torch.tensor([[1.0, NAN, 0.0, 1.0], [NAN, 2.0, NAN, NAN], [NAN, NAN, NAN, NAN]])
    for scale in ("group", "batch", "none"):
        adv = group_advantages(rewards, scale=scale, eps=1e-8, baseline="leave_one_out")
        assert torch.isfinite(adv).all() and (adv[1:] == 0).all() and adv[0, 1] == 0, scale
    close(group_advantages(rewards, scale="none", baseline="leave_one_out"),
          [[0.5, 0.0, -1.0, 0.5], [0.0] * 4, [0.0] * 4])


def test_leave_one_out_with_std_scaling():
    # group: [1, 0, 0, 0] has std .5 -> [1, -1/3, -1/3, -1/3] / .5
    close(group_advantages(torch.tensor([[1.0, 0.0, 0.0, 0.0]]), scale="group", eps=1e-8,
                           baseline="leave_one_out"), [[2.0, -2 / 3, -2 / 3, -2 / 3]])
    # batch: [[1, 0], [1, 1]] -> LOO [[1, -1], [0, 0]]; batch std .5 (see test_advantages) -> x 2
    close(group_advantages(torch.tensor([[1.0, 0.0], [1.0, 1.0]]), scale="batch", eps=1e-8,
                           baseline="leave_one_out"), [[2.0, -2.0], [0.0, 0.0]])


def test_leave_one_out_gradient_is_reinforce():
    # at r = 1 the clip loss's gradient is -A per token: with token-mean over 4 one-token sequences, -A / 4
    adv = group_advantages(torch.tensor([[1.0, 0.0, 0.0, 0.0]]), scale="none", baseline="leave_one_out")
    logp = torch.full((4, 1), -0.5, requires_grad=True)
    policy_loss(logp, logp.detach(), adv.reshape(-1), torch.ones(4, 1), agg="token-mean")[0].backward()
    close(logp.grad, [[-1 / 4], [1 / 12], [1 / 12], [1 / 12]])


def test_unknown_baseline():
    with pytest.raises(GroupwiseError, match="baseline"):
        group_advantages(torch.zeros(1, 2), baseline="median")


# ---- presets ----------------------------------------------------------------------------------------------


def test_rloo_and_reinforce_pp_resolved_configs():
    rloo = build_config(None, ["algorithm.preset=rloo"]).algorithm
    assert (rloo.baseline, rloo.scale, rloo.loss, rloo.beta) == ("leave_one_out", "none", "clip", 0.0)
    assert rloo.dual_clip is None and rloo.agg == "seq-mean-token-mean" and rloo.num_iterations == 1
    pp = build_config(None, ["algorithm.preset=reinforce_pp"]).algorithm
    assert (pp.baseline, pp.scale, pp.loss, pp.beta) == ("mean", "batch", "clip", 0.0)
    # a knob set by hand still wins over the preset; other presets reset the baseline to the mean
    assert build_config(None, ["algorithm.preset=rloo", "algorithm.scale=group"]).algorithm.scale == "group"
    assert build_config(None, ["algorithm.preset=grpo"]).algorithm.baseline == "mean"
    assert build_config(None, ["algorithm.preset=rloo", "algorithm.dual_clip=3"]).algorithm.dual_clip == 3.0
