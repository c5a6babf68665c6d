"""Per-token KL(pi || pi_ref) estimators on samples of pi (Schulman 2020, "Approximating KL Divergence")."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from groupwise.errors import GroupwiseError


def kl_k1(logp: Tensor, ref_logp: Tensor) -> Tensor:
    """k1 = log pi - log pi_ref (Schulman 2020): unbiased, high variance, can be negative."""
    return logp - ref_logp


def kl_k2(logp: Tensor, ref_logp: Tensor) -> Tensor:
    """k2 = (log pi - log pi_ref)^2 / 2 (Schulman 2020): biased, low variance, >= 0."""
    return (logp - ref_logp) ** 2 / 2


def kl_k3(logp: Tensor, ref_logp: Tensor) -> Tensor:
    """k3 = exp(ref - logp) - (ref - logp) - 1 (Schulman 2020; DeepSeekMath arXiv 2402.03300 eq. 4)."""
    log_r = ref_logp - logp
    return torch.exp(log_r) - log_r - 1


def kl_k3_clamped(logp: Tensor, ref_logp: Tensor) -> Tensor:
    """k3 with r = ref - logp clamped to [-20, 20] and k3 to [-10, 10]: verl's low_var_kl (core_algos.py)."""
    # logp, ref_logp: [B, T] -> [B, T] in [0, 10]; a token beyond the bound adds 10 and no gradient
    log_r = (ref_logp - logp).clamp(-20.0, 20.0)
    return (torch.exp(log_r) - log_r - 1).clamp(-10.0, 10.0)


KL_ESTIMATORS: dict[str, Callable[[Tensor, Tensor], Tensor]] = {
    "k1": kl_k1, "k2": kl_k2, "k3": kl_k3, "k3_clamped": kl_k3_clamped}


def kl_penalty(logp: Tensor, ref_logp: Tensor, estimator: str = "k3") -> Tensor:
    """Per-token KL estimate chosen by name (k1, k2, k3, k3_clamped) from Schulman's approximators."""
    # logp, ref_logp: [B, T] -> [B, T]
    fn = KL_ESTIMATORS.get(estimator)
    if fn is None:
        raise GroupwiseError(f"unknown KL estimator {estimator!r}", f"use one of {', '.join(KL_ESTIMATORS)}")
    return fn(logp, ref_logp)
