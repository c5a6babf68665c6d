"""policy_loss for every kind and aggregation on a small batch whose ratios are set by hand.

The batch: 2 sequences x 3 tokens, the last token of sequence 1 is padding.
    ratios r  = [[1.0, 1.5, 0.5], [0.7, 1.1, (1.0)]]
    logp      = [[-1.0, -2.0, -0.5], [-1.5, -0.3, (-2.0)]]
    advantage = [1.0, -2.0]
"""

import math

import pytest
import torch

from groupwise.algorithms import POLICY_LOSSES, TokenLoss, policy_loss, register_policy_loss
from groupwise.errors import GroupwiseError

RATIOS = [[1.0, 1.5, 0.5], [0.7, 1.1, 1.0]]
LOGP = [[-1.0, -2.0, -0.5], [-1.5, -0.3, -2.0]]
MASK = [[1, 1, 1], [1, 1, 0]]
ADV = [1.0, -2.0]
LOG2 = math.log(2.0)


Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


def batch(dtype: torch.dtype = torch.float64) -> Batch:
    logp = torch.tensor(LOGP, dtype=dtype, requires_grad=True)
    old = (logp - torch.log(torch.tensor(RATIOS, dtype=dtype))).detach()
    return logp, old, torch.tensor(ADV, dtype=dtype), torch.tensor(MASK, dtype=dtype)


def value(loss: torch.Tensor) -> float:
    return float(loss.detach())


# ---- kind="clip" ------------------------------------------------------------------------------------------
# sequence 0 (A = 1):  r 1.0 -> -min(1, 1) = -1;  r 1.5 -> -min(1.5, 1.2) = -1.2;  r .5 -> -min(.5, .8) = -.5
# sequence 1 (A = -2): r .7 -> -min(-1.4, -1.6) = 1.6;  r 1.1 -> -min(-2.2, -2.2) = 2.2
# token sums: -2.7 (3 tokens) and 3.8 (2 tokens)


def test_clip_seq_mean_token_mean():
    logp, old, adv, mask = batch()
    loss, stats = policy_loss(logp, old, adv, mask)
    assert value(loss) == pytest.approx((-2.7 / 3 + 3.8 / 2) / 2)  # (-.9 + 1.9) / 2 = .5
    # valid tokens: 5. High clip active at r 1.5 with A > 0; low clip active at r .7 with A < 0
    # (r .5 has A > 0, where the low clip does not bind)
    assert stats["clip_frac_high"] == pytest.approx(1 / 5)
    assert stats["clip_frac_low"] == pytest.approx(1 / 5)
    assert stats["ratio_mean"] == pytest.approx((1.0 + 1.5 + 0.5 + 0.7 + 1.1) / 5)  # .96
    assert stats["kl"] == 0.0 and "is_weight_mean" not in stats


def test_clip_token_mean_and_sum_norm():
    logp, old, adv, mask = batch()
    loss, _ = policy_loss(logp, old, adv, mask, agg="token-mean")
    assert value(loss) == pytest.approx((-2.7 + 3.8) / 5)  # .22
    loss, _ = policy_loss(logp, old, adv, mask, agg="seq-mean-token-sum-norm", max_tokens=4)
    assert value(loss) == pytest.approx((-2.7 / 4 + 3.8 / 4) / 2)  # .1375
    loss, _ = policy_loss(logp, old, adv, mask, agg="seq-mean-token-sum-norm")  # max_tokens defaults to T = 3
    assert value(loss) == pytest.approx((-2.7 / 3 + 3.8 / 3) / 2)


def test_clip_higher():
    # eps_high .28: r 1.5 is now clipped at 1.28 instead of 1.2 -> sequence 0 sum -1 - 1.28 - .5 = -2.78
    logp, old, adv, mask = batch()
    loss, _ = policy_loss(logp, old, adv, mask, eps_high=0.28, agg="token-mean")
    assert value(loss) == pytest.approx((-2.78 + 3.8) / 5)


def test_clip_gradient():
    # seq-mean-token-mean weights: 1/(3*2) for sequence 0, 1/(2*2) for sequence 1.
    # d(-r A)/d logp = -r A on unclipped tokens; 0 on clipped ones (r 1.5 with A > 0, r .7 with A < 0)
    logp, old, adv, mask = batch()
    loss, _ = policy_loss(logp, old, adv, mask)
    loss.backward()
    expected = [[-1.0 / 6, 0.0, -0.5 / 6], [0.0, 2.2 / 4, 0.0]]
    torch.testing.assert_close(logp.grad, torch.tensor(expected, dtype=logp.dtype))


# ---- kind="cispo" -----------------------------------------------------------------------------------------
# weights w = clip(r, .8, 1.2) = [[1, 1.2, .8], [.8, 1.1]]; loss_t = -w * A * logp
#   sequence 0: -1*1*(-1) = 1;  -1.2*1*(-2) = 2.4;  -.8*1*(-.5) = .4
#   sequence 1: -.8*(-2)*(-1.5) = -2.4;  -1.1*(-2)*(-.3) = -.66        -> sum over 5 tokens: .74


def test_cispo_value_and_gradient():
    logp, old, adv, mask = batch()
    loss, stats = policy_loss(logp, old, adv, mask, kind="cispo", agg="token-mean")
    assert value(loss) == pytest.approx(0.74 / 5)
    loss.backward()
    # gradient = -w * A / 5; the clipped token r 1.5 keeps gradient -1.2 / 5 (PPO-clip gives it 0)
    expected = [[-1.0 / 5, -1.2 / 5, -0.8 / 5], [-0.8 * 2 / 5 * -1, 1.1 * 2 / 5, 0.0]]
    torch.testing.assert_close(logp.grad, torch.tensor(expected, dtype=logp.dtype))
    assert logp.grad[0, 1] != 0
    # CISPO counts clipped weights whatever the advantage sign: high r 1.5; low r .5 and .7
    assert stats["clip_frac_high"] == pytest.approx(1 / 5)
    assert stats["clip_frac_low"] == pytest.approx(2 / 5)


def test_cispo_vs_clip_on_clipped_token():
    logp, old, adv, mask = batch()
    policy_loss(logp, old, adv, mask, kind="clip", agg="token-mean")[0].backward()
    assert logp.grad[0, 1] == 0  # r 1.5 > 1.2 with A > 0: PPO-clip drops the token
    logp2, old2, adv2, mask2 = batch()
    policy_loss(logp2, old2, adv2, mask2, kind="cispo", agg="token-mean")[0].backward()
    assert logp2.grad[0, 1] == pytest.approx(-1.2 / 5)


def test_cispo_without_lower_bound():
    # eps_low 1.0: lower bound 0, so w = r for r .5 and .7: sequence 0: 1 + 2.4 + .5*.5 = 3.65;
    # sequence 1: -.7*2*1.5 = -2.1, -.66 -> total .89
    logp, old, adv, mask = batch()
    loss, stats = policy_loss(logp, old, adv, mask, kind="cispo", eps_low=1.0, eps_high=0.2, agg="token-mean")
    assert value(loss) == pytest.approx(0.89 / 5)
    assert stats["clip_frac_low"] == 0.0


# ---- kind="gspo" ------------------------------------------------------------------------------------------
# s_0 = (1 * 1.5 * .5)^(1/3) = .75^(1/3) = .90856;  s_1 = (.7 * 1.1)^(1/2) = .77^(1/2) = .87750
S0, S1 = 0.75 ** (1 / 3), 0.77**0.5


def test_gspo_sequence_ratio_and_loss():
    logp, old, adv, mask = batch()
    loss, stats = policy_loss(logp, old, adv, mask, kind="gspo")
    # both inside [.8, 1.2]: sequence losses -s_0 * 1 and -s_1 * (-2)
    assert value(loss) == pytest.approx((-S0 + 2 * S1) / 2)
    assert stats["ratio_mean"] == pytest.approx((3 * S0 + 2 * S1) / 5)
    # token-mean of a per-sequence constant weighs sequences by length
    loss, _ = policy_loss(logp, old, adv, mask, kind="gspo", agg="token-mean")
    assert value(loss) == pytest.approx((3 * -S0 + 2 * 2 * S1) / 5)


def test_gspo_paper_clip_range():
    # eps 3e-4 / 4e-4: s_0 < 1 - 3e-4 with A > 0 -> min(s_0, .9997) = s_0, unclipped;
    # s_1 < 1 - 3e-4 with A < 0 -> min(-2 s_1, -2 * .9997) = -1.9994: clipped, both of its tokens count
    logp, old, adv, mask = batch()
    loss, stats = policy_loss(logp, old, adv, mask, kind="gspo", eps_low=3e-4, eps_high=4e-4)
    assert value(loss) == pytest.approx((-S0 + 2 * 0.9997) / 2)
    assert stats["clip_frac_low"] == pytest.approx(2 / 5)
    assert stats["clip_frac_high"] == 0.0
    loss.backward()
    assert (logp.grad[1] == 0).all() and (logp.grad[0] != 0).all()


def test_gspo_gradient_matches_sequence_objective():
    # GSPO: d(-s A)/d logp_t = -A s / |y|; with seq-mean-token-mean over 2 sequences, another factor 1/2
    logp, old, adv, mask = batch()
    policy_loss(logp, old, adv, mask, kind="gspo")[0].backward()
    expected = [[-S0 / 3 / 2] * 3, [2 * S1 / 2 / 2] * 2 + [0.0]]
    torch.testing.assert_close(logp.grad, torch.tensor(expected, dtype=logp.dtype))
    # and the same as differentiating the sequence-level ratio directly
    logp2, old2, adv2, mask2 = batch()
    s = torch.exp(((logp2 - old2) * mask2).sum(-1) / mask2.sum(-1))
    (-(s * adv2)).mean().backward()
    torch.testing.assert_close(logp.grad, logp2.grad)


# ---- KL, importance weights, masks ------------------------------------------------------------------------


def test_kl_term_and_is_weights():
    logp, old, adv, mask = batch()
    ref = (logp - LOG2).detach()  # logp - ref = log 2 everywhere -> k3 = .5 + log 2 - 1 = .19315 per token
    k3 = 0.5 + LOG2 - 1.0
    loss, stats = policy_loss(logp, old, adv, mask, ref_logp=ref, beta=0.1)
    assert value(loss) == pytest.approx(0.5 + 0.1 * k3)
    assert stats["kl"] == pytest.approx(k3)
    # beta 0: KL reported, not added
    loss, stats = policy_loss(logp, old, adv, mask, ref_logp=ref, beta=0.0)
    assert value(loss) == pytest.approx(0.5) and stats["kl"] == pytest.approx(k3)
    # is_weights 2 double the policy part only: 2 * .5 + .1 * k3
    w = torch.full((2, 3), 2.0, dtype=logp.dtype, requires_grad=True)
    loss, stats = policy_loss(logp, old, adv, mask, ref_logp=ref, beta=0.1, is_weights=w)
    assert value(loss) == pytest.approx(1.0 + 0.1 * k3)
    assert stats["is_weight_mean"] == pytest.approx(2.0)
    loss.backward()
    assert w.grad is None  # no gradient flows into the importance weights
    assert logp.grad is not None


def test_k1_kl_gradient():
    # k1 = logp - ref: with beta .5 and token-mean, each valid token's gradient gains .5 / 5
    logp, old, adv, mask = batch()
    ref = logp.detach().clone()
    policy_loss(logp, old, adv, mask, agg="token-mean")[0].backward()
    base = logp.grad.clone()
    logp2, old2, adv2, mask2 = batch()
    loss, _ = policy_loss(logp2, old2, adv2, mask2, agg="token-mean", ref_logp=ref, beta=0.5,
                          kl_estimator="k1")
    loss.backward()
    torch.testing.assert_close(logp2.grad - base, 0.1 * mask2)


@pytest.mark.parametrize("kind", ["clip", "cispo", "gspo"])
@pytest.mark.parametrize("agg", ["seq-mean-token-mean", "token-mean", "seq-mean-token-sum-norm"])
def test_empty_mask_and_garbage_padding(kind: str, agg: str):
    logp = torch.tensor([[-1.0, float("-inf")], [float("nan"), -2.0]], requires_grad=True)
    old = torch.tensor([[-1.0, float("-inf")], [float("nan"), -0.5]])
    ref = torch.tensor([[-1.2, float("nan")], [float("-inf"), -1.8]])  # garbage on padding only
    adv = torch.tensor([1.0, -1.0])
    loss, stats = policy_loss(logp, old, adv, torch.zeros(2, 2), kind=kind, agg=agg, ref_logp=ref, beta=0.1,
                              is_weights=torch.ones(2, 2))
    assert value(loss) == 0.0 and loss.requires_grad
    assert all(math.isfinite(v) for v in stats.values())
    loss.backward()
    assert torch.equal(logp.grad, torch.zeros(2, 2))
    # padding holding -inf / NaN never leaks into a partly valid batch
    logp.grad = None
    mask = torch.tensor([[True, False], [False, True]])
    loss, stats = policy_loss(logp, old, adv, mask, kind=kind, agg=agg, ref_logp=ref, beta=0.1)
    loss.backward()
    assert math.isfinite(value(loss)) and torch.isfinite(logp.grad).all()
    assert all(math.isfinite(v) for v in stats.values())


def test_mask_dtypes_and_token_advantages_agree():
    logp, old, adv, mask = batch()
    reference = value(policy_loss(logp, old, adv, mask)[0])
    assert value(policy_loss(logp, old, adv, mask.bool())[0]) == pytest.approx(reference)
    assert value(policy_loss(logp, old, adv[:, None].expand(2, 3), mask)[0]) == pytest.approx(reference)


def test_fully_masked_sequence_left_out_of_seq_mean():
    # sequence 1 fully masked: seq-mean-token-mean is sequence 0 alone, -2.7 / 3
    logp, old, adv, _ = batch()
    mask = torch.tensor([[1, 1, 1], [0, 0, 0]])
    assert value(policy_loss(logp, old, adv, mask)[0]) == pytest.approx(-0.9)
    # Dr. GRPO keeps the constant denominator: -2.7 / 3 / 2 sequences
    assert value(policy_loss(logp, old, adv, mask, agg="seq-mean-token-sum-norm")[0]) == pytest.approx(-0.45)


def test_unknown_names_raise():
    logp, old, adv, mask = batch()
    for kwargs in ({"kind": "ppo2"}, {"agg": "sum"}, {"kl_estimator": "k9"}, {"eps_low": -0.1}):
        with pytest.raises(GroupwiseError):
            policy_loss(logp, old, adv, mask, **kwargs)
    with pytest.raises(GroupwiseError, match="max_tokens"):
        policy_loss(logp, old, adv, mask, agg="seq-mean-token-sum-norm", max_tokens=0)


def test_register_policy_loss():
    @register_policy_loss("test-reinforce")
    def reinforce(logp, old_logp, advantages, mask, eps_low, eps_high):  # -A * logp, no ratio
        none = torch.zeros_like(mask)
        return TokenLoss(-advantages * logp, torch.ones_like(logp), none, none)

    try:
        logp, old, adv, mask = batch()
        loss, _ = policy_loss(logp, old, adv, mask, kind="test-reinforce", agg="token-mean")
        # -(1 * (-1 - 2 - .5)) + -(-2 * (-1.5 - .3)) = 3.5 - 3.6 = -.1 over 5 tokens
        assert value(loss) == pytest.approx(-0.1 / 5)
    finally:
        POLICY_LOSSES.pop("test-reinforce")
