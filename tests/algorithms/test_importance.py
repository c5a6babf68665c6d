"""TIS / MIS importance weights at the cap boundary, at token and sequence level."""

import pytest
import torch

from groupwise.algorithms import importance_weights
from groupwise.errors import GroupwiseError

# rho = [[1, 2, 4], [.5, 8, (100: padding)]]
RHO = torch.tensor([[1.0, 2.0, 4.0], [0.5, 8.0, 100.0]])
MASK = torch.tensor([[1, 1, 1], [1, 1, 0]])


def inputs() -> tuple[torch.Tensor, torch.Tensor]:
    rollout = torch.tensor([[-1.0, -2.0, -3.0], [-0.5, -1.5, -2.5]])
    return (rollout + torch.log(RHO)).requires_grad_(True), rollout


def test_token_truncate():
    old, rollout = inputs()
    cap = float(torch.exp(old - rollout).detach()[0, 1])  # rho 2 exactly as the function computes it
    w, stats = importance_weights(old, rollout, MASK, cap=cap)
    torch.testing.assert_close(w, torch.tensor([[1.0, 2.0, 2.0], [0.5, 2.0, 0.0]]))
    assert not w.requires_grad
    assert stats["is_weight_mean"] == pytest.approx((1 + 2 + 2 + 0.5 + 2) / 5)  # 1.5
    assert stats["is_weight_max"] == pytest.approx(2.0)
    assert stats["is_frac_capped"] == pytest.approx(2 / 5)  # rho 4 and 8 (rho == cap is not capped)


def test_token_mask_keeps_rho_equal_to_cap():
    old, rollout = inputs()
    cap = float(torch.exp(old - rollout).detach()[0, 1])
    w, stats = importance_weights(old, rollout, MASK, mode="mask", cap=cap)
    torch.testing.assert_close(w, torch.tensor([[1.0, 2.0, 0.0], [0.5, 0.0, 0.0]]))
    assert stats["is_weight_mean"] == pytest.approx((1 + 2 + 0.5) / 5)  # .7
    # just below rho 2 the token is dropped
    w, _ = importance_weights(old, rollout, MASK, mode="mask", cap=1.999)
    assert w[0, 1] == 0


def test_sequence_level_product():
    # products over valid tokens: 1 * 2 * 4 = 8 and .5 * 8 = 4 (the padding rho 100 left out)
    old, rollout = inputs()
    w, stats = importance_weights(old, rollout, MASK, level="sequence", cap=5.0)
    torch.testing.assert_close(w, torch.tensor([[5.0, 5.0, 5.0], [4.0, 4.0, 0.0]]))
    assert stats["is_frac_capped"] == pytest.approx(3 / 5)
    w, _ = importance_weights(old, rollout, MASK, level="sequence", mode="mask", cap=5.0)
    torch.testing.assert_close(w, torch.tensor([[0.0, 0.0, 0.0], [4.0, 4.0, 0.0]]))
    w, _ = importance_weights(old, rollout, MASK, level="sequence", cap=10.0)
    torch.testing.assert_close(w, torch.tensor([[8.0, 8.0, 8.0], [4.0, 4.0, 0.0]]))


def test_empty_mask_and_bad_names():
    old, rollout = inputs()
    w, stats = importance_weights(old, rollout, torch.zeros(2, 3))
    assert torch.equal(w, torch.zeros(2, 3)) and stats["is_weight_mean"] == 0.0
    for kwargs in ({"level": "token-ish"}, {"mode": "clip"}, {"cap": 0.0}):
        with pytest.raises(GroupwiseError):
            importance_weights(old, rollout, MASK, **kwargs)
