"""Importance weights pi_train / pi_rollout that correct the mismatch between rollout engine and trainer.

TIS truncates the weight at a cap, MIS zeroes tokens whose weight exceeds it (Yao et al. 2025, "Your
efficient RL framework secretly brings you off-policy RL training"). Weights are detached constants; padding
positions (mask 0) get weight 0.
"""

from __future__ import annotations

import torch
from torch import Tensor

from groupwise.algorithms.masks import as_bool_mask, masked_mean
from groupwise.errors import GroupwiseError

IS_LEVELS = ("token", "sequence")
IS_MODES = ("truncate", "mask")


def importance_ratio(old_logp: Tensor, rollout_logp: Tensor, mask: Tensor, level: str = "token") -> Tensor:
    """rho = exp(log pi_train - log pi_rollout) per token or its product per sequence (Yao et al. 2025)."""
    # old_logp, rollout_logp, mask: [B, T] -> [B, T] (detached; padding gets 1 before masking)
    if level not in IS_LEVELS:
        raise GroupwiseError(f"unknown importance-sampling level {level!r}",
                             f"use one of {', '.join(IS_LEVELS)}")
    keep = as_bool_mask(mask)
    diff = (old_logp - rollout_logp).detach().float()
    log_rho = torch.where(keep, diff, torch.zeros_like(diff))
    if level == "sequence":
        log_rho = log_rho.sum(dim=-1, keepdim=True).expand_as(log_rho)
    return torch.exp(log_rho)


def importance_weights(old_logp: Tensor, rollout_logp: Tensor, mask: Tensor, *, level: str = "token",
                       mode: str = "truncate", cap: float = 2.0) -> tuple[Tensor, dict[str, float]]:
    """TIS min(rho, cap) or MIS rho * [rho <= cap] (Yao et al. 2025), detached, 0 on padding."""
    # old_logp, rollout_logp, mask: [B, T] -> weights [B, T], stats over valid tokens
    if mode not in IS_MODES:
        raise GroupwiseError(f"unknown importance-sampling mode {mode!r}",
                             f"use one of {', '.join(IS_MODES)}")
    if cap <= 0:
        raise GroupwiseError(f"importance-weight cap must be > 0, got {cap}", "set algorithm.is_cap above 0")
    keep = as_bool_mask(mask)
    rho = importance_ratio(old_logp, rollout_logp, keep, level)
    capped = rho > cap
    if mode == "truncate":
        weights = rho.clamp(max=cap)
    else:
        weights = torch.where(capped, torch.zeros_like(rho), rho)
    weights = torch.where(keep, weights, torch.zeros_like(weights))
    stats = {
        "is_weight_mean": float(masked_mean(weights, keep)),
        "is_weight_max": float(weights.max()) if weights.numel() else 0.0,
        "is_frac_capped": float(masked_mean(capped.float(), keep)),
    }
    return weights, stats
