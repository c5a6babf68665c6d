"""DAPO's soft overlong punishment, added to the reward of completions near or past the length limit."""

from __future__ import annotations

import torch
from torch import Tensor

from groupwise.errors import GroupwiseError


def soft_overlong_penalty(lengths: Tensor, max_len: int, cache_len: int) -> Tensor:
    """0 / (max_len - cache_len - L) / cache_len / -1 by length: DAPO (arXiv 2503.14476) eq. 13."""
    # lengths: [N] int -> [N] float; cache_len 0 degenerates to a hard cut: 0 up to max_len, -1 beyond
    if cache_len < 0 or cache_len > max_len:
        raise GroupwiseError(f"overlong cache {cache_len} must lie in [0, max_len={max_len}]",
                             "set algorithm.overlong_cache below the completion budget (rollout.max_new_tokens, or "
                             "rollout.max_episode_tokens with an environment)")
    length = lengths.float()
    start = max_len - cache_len
    ramp = (start - length) / max(cache_len, 1)
    penalty = torch.where(length <= start, torch.zeros_like(length), ramp)
    return torch.where(length > max_len, torch.full_like(length, -1.0), penalty)
