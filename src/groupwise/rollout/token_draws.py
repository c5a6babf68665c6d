"""Drawing tokens from logits: nucleus filtering and an exact categorical draw from given uniforms."""

from __future__ import annotations

import torch
from torch import Tensor


def top_p_filter(logits: Tensor, top_p: float) -> Tensor:
    """Nucleus sampling (Holtzman et al. 2020): keep the smallest set of tokens whose probability reaches top_p."""
    if top_p >= 1.0:
        return logits
    sorted_logits, order = logits.sort(dim=-1, descending=True)
    cumulative = sorted_logits.softmax(-1).cumsum(-1)
    drop_sorted = cumulative - sorted_logits.softmax(-1) >= top_p  # mass before this token already reaches top_p
    drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
    return logits.masked_fill(drop, float("-inf"))


def sample_categorical(probs: Tensor, uniforms: Tensor | None = None) -> Tensor:
    """One draw per row of `probs` [N, V] by inverting its cumulative sum: exact, and far cheaper on a CPU than
    `torch.multinomial`, which draws an exponential variate for every vocabulary entry. `uniforms` [N] in [0, 1)
    are the rows' own random numbers (default: drawn from torch's global generator)."""
    cdf = probs.cumsum(-1)
    if uniforms is None:
        uniforms = torch.rand(probs.shape[0], device=probs.device, dtype=cdf.dtype)
    below_one = 1.0 - torch.finfo(cdf.dtype).eps  # a float64 uniform may round up to 1.0 in float32
    u = uniforms.to(device=probs.device, dtype=cdf.dtype).clamp(max=below_one)[:, None] * cdf[:, -1:]
    return torch.searchsorted(cdf, u, right=True).squeeze(-1).clamp_(max=probs.shape[-1] - 1)
