"""Group-relative advantages, per-group success rates and F-GRPO focal weights.

Rewards come as `[P, G]`: P prompts, G completions each. The baseline is the group mean (GRPO) or, for
RLOO, the mean of the group's other samples. A NaN reward (a reward function returned None)
is left out of every mean and std and gets advantage 0. A sample counts as a success when its reward is
>= `threshold`; with `threshold=None` the threshold is 1.0, the maximum of a 0/1 reward.
"""

from __future__ import annotations

import torch
from torch import Tensor

from groupwise.errors import GroupwiseError

SCALES = ("group", "batch", "none")
BASELINES = ("mean", "leave_one_out")
DEFAULT_SUCCESS_THRESHOLD = 1.0


def group_advantages(rewards: Tensor, scale: str = "group", eps: float = 1e-4, baseline: str = "mean") -> Tensor:
    """(r - baseline) / (std + eps): DeepSeekMath (arXiv 2402.03300) sec. 4.1.2; "none" is Dr. GRPO."""
    # rewards: [P, G] -> advantages: [P, G]; std is unbiased (N - 1), 0 when fewer than 2 valid values;
    # the std is always that of the rewards themselves, whichever baseline is subtracted
    if scale not in SCALES:
        raise GroupwiseError(f"unknown advantage scale {scale!r}", f"use one of {', '.join(SCALES)}")
    if baseline not in BASELINES:
        raise GroupwiseError(f"unknown advantage baseline {baseline!r}", f"use one of {', '.join(BASELINES)}")
    rewards = rewards if rewards.is_floating_point() else rewards.float()
    valid = ~torch.isnan(rewards)
    filled = torch.where(valid, rewards, torch.zeros_like(rewards))
    count = valid.sum(dim=-1, keepdim=True)  # [P, 1]
    mean = filled.sum(dim=-1, keepdim=True) / count.clamp(min=1)
    centered = torch.where(valid, rewards - mean, torch.zeros_like(rewards))
    shifted = leave_one_out(rewards) if baseline == "leave_one_out" else centered
    if scale == "none":
        return shifted
    if scale == "group":
        var = (centered**2).sum(dim=-1, keepdim=True) / (count - 1).clamp(min=1)
        std = torch.where(count > 1, var.sqrt(), torch.zeros_like(var))
    else:
        n = valid.sum()
        batch_mean = filled.sum() / n.clamp(min=1)
        dev = torch.where(valid, rewards - batch_mean, torch.zeros_like(rewards))
        var = (dev**2).sum() / (n - 1).clamp(min=1)
        std = torch.where(n > 1, var.sqrt(), torch.zeros_like(var))
    return shifted / (std + eps)


def leave_one_out(rewards: Tensor) -> Tensor:
    """r_i - mean of the group's other valid rewards: the RLOO baseline, Ahmadian et al. (arXiv 2402.14740)."""
    # rewards: [P, G] -> [P, G]; NaN rewards are left out and get 0, as does a group's only valid reward
    rewards = rewards if rewards.is_floating_point() else rewards.float()
    valid = ~torch.isnan(rewards)
    filled = torch.where(valid, rewards, torch.zeros_like(rewards))
    count = valid.sum(dim=-1, keepdim=True)  # [P, 1]
    others = (filled.sum(dim=-1, keepdim=True) - filled) / (count - 1).clamp(min=1)
    return torch.where(valid & (count > 1), rewards - others, torch.zeros_like(rewards))


def success_threshold(threshold: float | None) -> float:
    """The reward that counts as a success: `threshold`, or 1.0 (the maximum of a 0/1 reward) when None."""
    return DEFAULT_SUCCESS_THRESHOLD if threshold is None else threshold


def success_rate(rewards: Tensor, threshold: float | None = None) -> Tensor:
    """Share of each group's valid rewards >= threshold (default 1.0); 0 for a group with no valid reward."""
    # rewards: [P, G] -> [P]
    valid = ~torch.isnan(rewards)
    hits = (valid & (torch.nan_to_num(rewards.float(), nan=0.0) >= success_threshold(threshold))).sum(dim=-1)
    return hits.float() / valid.sum(dim=-1).clamp(min=1).float()


def focal_weights(success_rate: Tensor, gamma: float) -> Tensor:
    """g(x) = (1 - p)^gamma: F-GRPO (arXiv 2602.06717) eq. 12, with 0^0 = 1."""
    # success_rate: [P] -> [P]
    if gamma < 0:
        raise GroupwiseError(f"focal gamma must be >= 0, got {gamma}", "set algorithm.focal_gamma >= 0")
    return torch.pow((1.0 - success_rate.float()).clamp(min=0.0), gamma)  # torch.pow(0, 0) == 1


def focal_advantages(advantages: Tensor, rewards: Tensor, gamma: float,
                     threshold: float | None = None) -> Tensor:
    """g(x) * A: F-GRPO (arXiv 2602.06717) eq. 13."""
    # advantages: [P, G], rewards: [P, G] -> [P, G]
    return advantages * focal_weights(success_rate(rewards, threshold), gamma).unsqueeze(-1)


def has_variance(group: Tensor) -> bool:
    """Whether a group's valid rewards [G] differ: only then does GRPO learn anything from it."""
    valid = group[~torch.isnan(group)]
    return valid.numel() > 1 and bool((valid != valid[0]).any())


def learnable_fraction(rewards: Tensor) -> float:
    """Share of groups whose rewards are not all equal: only those carry a GRPO learning signal. rewards: [P, G]."""
    return sum(has_variance(group) for group in rewards) / max(len(rewards), 1)
