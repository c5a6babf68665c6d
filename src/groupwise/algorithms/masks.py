"""Small masked reductions shared by the algorithm modules (masks are 0/1, bool or float)."""

from __future__ import annotations

import torch
from torch import Tensor


def as_bool_mask(mask: Tensor) -> Tensor:
    """A 0/1 mask (bool, int or float) as a bool tensor."""
    return mask if mask.dtype == torch.bool else mask != 0


def masked_mean(values: Tensor, mask: Tensor) -> Tensor:
    """Mean of `values` where `mask` is set; 0 when nothing is set (never NaN). values, mask: same shape."""
    keep = as_bool_mask(mask)
    total = torch.where(keep, values, torch.zeros_like(values)).sum()
    return total / keep.sum().clamp(min=1)
