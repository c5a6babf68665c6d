"""KL estimators, DAPO's soft overlong punishment and the unbiased pass@k estimator."""

import itertools
import math

import pytest
import torch

from groupwise.algorithms import kl_penalty, pass_at_k, pass_at_k_many, soft_overlong_penalty
from groupwise.errors import GroupwiseError

LOG2 = math.log(2.0)


def test_kl_estimators_by_hand():
    logp = torch.log(torch.tensor([[0.5, 0.3]]))
    ref = torch.log(torch.tensor([[0.25, 0.3]]))
    # token 0: logp - ref = log 2 = .69315; token 1: equal -> 0 for every estimator
    torch.testing.assert_close(kl_penalty(logp, ref, "k1"), torch.tensor([[LOG2, 0.0]]))
    # k2 = (log 2)^2 / 2 = .24023
    torch.testing.assert_close(kl_penalty(logp, ref, "k2"), torch.tensor([[LOG2**2 / 2, 0.0]]))
    # k3 = exp(-log 2) - (-log 2) - 1 = .5 + .69315 - 1 = .19315
    torch.testing.assert_close(kl_penalty(logp, ref), torch.tensor([[0.5 + LOG2 - 1.0, 0.0]]))


def test_kl_k3_nonnegative_and_k1_sign():
    logp = torch.log(torch.tensor([0.1, 0.9]))
    ref = torch.log(torch.tensor([0.9, 0.1]))
    assert (kl_penalty(logp, ref, "k3") >= 0).all()
    assert kl_penalty(logp, ref, "k1")[0] < 0  # k1 can go negative


def test_kl_k3_clamped_by_hand():
    # r = ref - logp per token: log 2, 3, 5 and 30 (pi_ref / pi = 2, e^3, e^5, e^30)
    logp = torch.zeros(1, 4, requires_grad=True)
    ref = torch.tensor([[LOG2, 3.0, 5.0, 30.0]])
    k3 = kl_penalty(logp.detach(), ref, "k3")
    # plain k3 = e^r - r - 1: 2 - .69315 - 1 = .30685; e^3 - 4 = 16.0855; e^5 - 6 = 142.41; e^30 - 31 ~ 1.07e13
    torch.testing.assert_close(k3[0, :3], torch.tensor([2 - LOG2 - 1, math.exp(3) - 4, math.exp(5) - 6]))
    assert k3[0, 3] > 1e13
    clamped = kl_penalty(logp, ref, "k3_clamped")
    # below the bound unchanged; 16.09, 142.4 and the e^30 token (r clamped to 20 first) all become 10
    torch.testing.assert_close(clamped.detach(), torch.tensor([[2 - LOG2 - 1, 10.0, 10.0, 10.0]]))
    clamped.sum().backward()
    # d k3 / d logp = 1 - e^r = 1 - 2 = -1 inside the bound; 0 where the clamp holds (as in verl)
    torch.testing.assert_close(logp.grad, torch.tensor([[-1.0, 0.0, 0.0, 0.0]]))


def test_kl_unknown_estimator():
    with pytest.raises(GroupwiseError, match="estimator"):
        kl_penalty(torch.zeros(1), torch.zeros(1), "k4")


def test_soft_overlong_boundaries():
    # max 20, cache 4: free up to 16, then (16 - L) / 4, -1 past 20
    lengths = torch.tensor([0, 16, 17, 18, 20, 21, 100])
    out = soft_overlong_penalty(lengths, max_len=20, cache_len=4)
    assert out.dtype.is_floating_point
    torch.testing.assert_close(out, torch.tensor([0.0, 0.0, -0.25, -0.5, -1.0, -1.0, -1.0]))


def test_soft_overlong_zero_cache_is_hard_cut():
    out = soft_overlong_penalty(torch.tensor([20, 21]), max_len=20, cache_len=0)
    torch.testing.assert_close(out, torch.tensor([0.0, -1.0]))
    with pytest.raises(GroupwiseError):
        soft_overlong_penalty(torch.tensor([1]), max_len=20, cache_len=21)


def brute_pass_at_k(n: int, c: int, k: int) -> float:
    samples = [True] * c + [False] * (n - c)
    subsets = list(itertools.combinations(samples, k))
    return sum(any(s) for s in subsets) / len(subsets)


def test_pass_at_k_matches_enumeration():
    for n in range(1, 9):
        for c in range(n + 1):
            for k in range(1, n + 1):
                assert pass_at_k(n, c, k) == pytest.approx(brute_pass_at_k(n, c, k), abs=1e-12), (n, c, k)


def test_pass_at_k_by_hand_and_edges():
    assert pass_at_k(4, 1, 2) == pytest.approx(0.5)  # 1 - C(3,2)/C(4,2) = 1 - 3/6
    assert pass_at_k(10, 3, 1) == pytest.approx(0.3)  # pass@1 is c / n
    assert pass_at_k(5, 0, 3) == 0.0
    assert pass_at_k(5, 3, 3) == 1.0  # n - c = 2 < k
    for n, c, k in [(4, 5, 1), (4, -1, 1), (4, 1, 0), (4, 1, 5)]:
        with pytest.raises(GroupwiseError):
            pass_at_k(n, c, k)


def test_pass_at_k_many():
    assert pass_at_k_many([4, 4], [0, 4], 2) == pytest.approx(0.5)
    assert pass_at_k_many([], [], 1) == 0.0
    with pytest.raises(GroupwiseError):
        pass_at_k_many([4], [1, 2], 1)
