"""Policy losses of the GRPO family, chosen by name (`kind`), and loss aggregations, chosen by name (`agg`).

A policy loss maps per-token log-probs to a per-token loss `[B, T]`; an aggregation reduces it to a scalar.
New variants are added with `register_policy_loss(name)` / `register_aggregation(name)`.
Inputs reaching a registered loss are already cleaned by `policy_loss`: padding positions hold 0 log-probs,
`old_logp` and advantages are detached and advantages are broadcast to `[B, T]`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import Tensor

from groupwise.algorithms.kl import KL_ESTIMATORS, kl_penalty
from groupwise.algorithms.masks import as_bool_mask, masked_mean
from groupwise.errors import GroupwiseError


class TokenLoss(NamedTuple):
    """A policy loss per token plus what the statistics need."""

    loss: Tensor  # [B, T] differentiable per-token loss (padding values are ignored by the aggregation)
    ratio: Tensor  # [B, T] detached ratio the clip acts on (token ratio, or the sequence ratio for GSPO)
    clipped_low: Tensor  # [B, T] bool: the lower clip changes this token's loss or weight
    clipped_high: Tensor  # [B, T] bool: the upper clip changes this token's loss or weight


PolicyLossFn = Callable[[Tensor, Tensor, Tensor, Tensor, float, float], TokenLoss]
AggregationFn = Callable[[Tensor, Tensor, int | None], Tensor]

POLICY_LOSSES: dict[str, PolicyLossFn] = {}
AGGREGATIONS: dict[str, AggregationFn] = {}


def register_policy_loss(name: str) -> Callable[[PolicyLossFn], PolicyLossFn]:
    """Register fn(logp, old_logp, advantages, mask, eps_low, eps_high) -> TokenLoss under `name`."""

    def add(fn: PolicyLossFn) -> PolicyLossFn:
        POLICY_LOSSES[name] = fn
        return fn

    return add


def register_aggregation(name: str) -> Callable[[AggregationFn], AggregationFn]:
    """Register fn(loss [B, T], mask [B, T] bool, max_tokens) -> scalar under `name`."""

    def add(fn: AggregationFn) -> AggregationFn:
        AGGREGATIONS[name] = fn
        return fn

    return add


def _clipped_surrogate(ratio: Tensor, advantages: Tensor, eps_low: float, eps_high: float) -> Tensor:
    """-min(r A, clip(r, 1 - eps_low, 1 + eps_high) A): PPO (arXiv 1707.06347) eq. 7."""
    # ratio, advantages: [B, T] -> [B, T]
    clipped = ratio.clamp(1.0 - eps_low, 1.0 + eps_high)
    return -torch.minimum(ratio * advantages, clipped * advantages)


@register_policy_loss("clip")
def clip_token_loss(logp: Tensor, old_logp: Tensor, advantages: Tensor, mask: Tensor, eps_low: float,
                    eps_high: float) -> TokenLoss:
    """Per-token clipped surrogate, r = exp(logp - old_logp): GRPO, DeepSeekMath (arXiv 2402.03300) eq. 3."""
    # logp, old_logp, advantages, mask: [B, T]
    ratio = torch.exp(logp - old_logp)
    loss = _clipped_surrogate(ratio, advantages, eps_low, eps_high)
    r = ratio.detach()
    return TokenLoss(loss, r, (r < 1.0 - eps_low) & (advantages < 0), (r > 1.0 + eps_high) & (advantages > 0))


@register_policy_loss("cispo")
def cispo_token_loss(logp: Tensor, old_logp: Tensor, advantages: Tensor, mask: Tensor, eps_low: float,
                     eps_high: float) -> TokenLoss:
    """-sg(clip(r, 1 - eps_low, 1 + eps_high)) A log pi: CISPO, MiniMax-M1 (arXiv 2506.13585) eq. 4."""
    # logp, old_logp, advantages, mask: [B, T]; every token keeps a gradient, only its weight is clipped
    ratio = torch.exp(logp - old_logp).detach()
    weight = ratio.clamp(1.0 - eps_low, 1.0 + eps_high)
    return TokenLoss(-weight * advantages * logp, ratio, ratio < 1.0 - eps_low, ratio > 1.0 + eps_high)


@register_policy_loss("gspo")
def gspo_token_loss(logp: Tensor, old_logp: Tensor, advantages: Tensor, mask: Tensor, eps_low: float,
                    eps_high: float) -> TokenLoss:
    """Clip surrogate on s_t = sg(s) pi/sg(pi), s = exp(mean log r): GSPO-token, arXiv 2507.18071 eq. 5-7."""
    # logp, old_logp, advantages, mask: [B, T]; s_t's value is the sequence ratio s and its gradient is
    # s * grad log pi_t, so the mean over a sequence's tokens has GSPO's sequence-level gradient
    keep = as_bool_mask(mask)
    lengths = keep.sum(dim=-1, keepdim=True).clamp(min=1)  # [B, 1]
    log_s = torch.where(keep, logp - old_logp, torch.zeros_like(logp)).sum(dim=-1, keepdim=True) / lengths
    seq_ratio = torch.exp(log_s.detach())  # [B, 1]
    token_ratio = seq_ratio * torch.exp(logp - logp.detach())  # [B, T], value == seq_ratio
    loss = _clipped_surrogate(token_ratio, advantages, eps_low, eps_high)
    s = seq_ratio.expand_as(logp)
    return TokenLoss(loss, s, (s < 1.0 - eps_low) & (advantages < 0), (s > 1.0 + eps_high) & (advantages > 0))


def dual_clip_cap(loss: Tensor, ratio: Tensor, advantages: Tensor, c: float) -> tuple[Tensor, Tensor]:
    """min(clip loss, -A c) where A < 0: dual-clip PPO, Ye et al. 2020 (arXiv 1912.09729)."""
    # loss, ratio, advantages: [B, T] -> capped loss [B, T], held [B, T] bool. For A < 0 the clip loss is
    # -A max(r, 1 - eps_low), which exceeds -A c (c > 1) exactly when r > c; there the loss is the constant
    # -A c and has no gradient. At r == c the loss is left alone, as clamp leaves a ratio on its bound.
    if not c > 1:
        raise GroupwiseError(f"dual_clip must be > 1, got {c}", "set algorithm.dual_clip above 1 (verl uses 3.0)")
    held = (advantages < 0) & (ratio.detach() > c)
    return torch.where(held, -advantages * c, loss), held


@register_aggregation("seq-mean-token-mean")
def seq_mean_token_mean(loss: Tensor, mask: Tensor, max_tokens: int | None = None) -> Tensor:
    """Mean over a sequence's valid tokens, then over non-empty sequences: GRPO (arXiv 2402.03300) eq. 3."""
    # loss, mask: [B, T] -> scalar; 0 when no token is valid
    keep = as_bool_mask(mask)
    lengths = keep.sum(dim=-1)  # [B]
    per_seq = torch.where(keep, loss, torch.zeros_like(loss)).sum(dim=-1) / lengths.clamp(min=1)
    return per_seq.sum() / (lengths > 0).sum().clamp(min=1)


@register_aggregation("token-mean")
def token_mean(loss: Tensor, mask: Tensor, max_tokens: int | None = None) -> Tensor:
    """Sum over all valid tokens / their count in the batch: DAPO (arXiv 2503.14476) sec. 3.3."""
    # loss, mask: [B, T] -> scalar; 0 when no token is valid
    return masked_mean(loss, mask)


@register_aggregation("seq-mean-token-sum-norm")
def seq_mean_token_sum_norm(loss: Tensor, mask: Tensor, max_tokens: int | None = None) -> Tensor:
    """Each sequence's token sum / max_tokens, mean over all B sequences: Dr. GRPO (arXiv 2503.20783)."""
    # loss, mask: [B, T] -> scalar; max_tokens defaults to T; the denominators are constants by design
    norm = loss.shape[-1] if max_tokens is None else max_tokens
    if norm < 1:
        raise GroupwiseError(f"max_tokens must be >= 1, got {norm}", "pass the generation length limit")
    keep = as_bool_mask(mask)
    per_seq = torch.where(keep, loss, torch.zeros_like(loss)).sum(dim=-1) / norm
    return per_seq.sum() / max(loss.shape[0], 1)


def policy_loss(
    logp: Tensor,  # [B, T] current policy, differentiable
    old_logp: Tensor,  # [B, T] policy that generated the batch (detached)
    advantages: Tensor,  # [B] per sequence (or [B, T])
    mask: Tensor,  # [B, T] 0/1 completion tokens
    *,
    kind: str = "clip",
    eps_low: float = 0.2,
    eps_high: float = 0.2,
    agg: str = "seq-mean-token-mean",
    max_tokens: int | None = None,
    ref_logp: Tensor | None = None,  # [B, T] reference policy
    beta: float = 0.0,
    kl_estimator: str = "k3",
    is_weights: Tensor | None = None,  # [B, T] TIS/MIS weights, used as constants
    dual_clip: float | None = None,  # c > 1: cap the loss of A < 0 tokens at -A c (kind "clip" only)
) -> tuple[Tensor, dict[str, float]]:
    """Aggregated policy loss (+ beta * KL per token) and its stats: GRPO (arXiv 2402.03300) eq. 3."""
    loss_fn = POLICY_LOSSES.get(kind)
    if loss_fn is None:
        raise GroupwiseError(f"unknown policy loss {kind!r}", f"use one of {', '.join(POLICY_LOSSES)}")
    reduce = AGGREGATIONS.get(agg)
    if reduce is None:
        raise GroupwiseError(f"unknown loss aggregation {agg!r}", f"use one of {', '.join(AGGREGATIONS)}")
    if kl_estimator not in KL_ESTIMATORS:
        raise GroupwiseError(f"unknown KL estimator {kl_estimator!r}",
                             f"use one of {', '.join(KL_ESTIMATORS)}")
    if eps_low < 0 or eps_high < 0:
        raise GroupwiseError(f"clip ranges must be >= 0, got eps_low={eps_low}, eps_high={eps_high}",
                             "set algorithm.eps_low and algorithm.eps_high to 0 or more")
    if dual_clip is not None and kind != "clip":
        raise GroupwiseError(f"dual_clip applies to the clip loss only, not to {kind!r}",
                             "set algorithm.dual_clip to null or algorithm.loss to clip")
    keep = as_bool_mask(mask)
    zeros = torch.zeros_like(logp)
    logp_v = torch.where(keep, logp, zeros)  # padding may hold -inf or NaN: keep it out of every op
    old_v = torch.where(keep, old_logp.detach().to(logp.dtype), zeros)
    adv = advantages.detach().to(logp.dtype)
    adv = (adv.unsqueeze(-1) if adv.dim() == 1 else adv).expand_as(logp)

    token = loss_fn(logp_v, old_v, adv, keep, eps_low, eps_high)
    loss_t = token.loss
    stats: dict[str, float] = {}
    if dual_clip is not None:
        loss_t, held = dual_clip_cap(loss_t, token.ratio, adv, dual_clip)
        stats["clip_frac_dual"] = float(masked_mean(held.float(), keep))
    if is_weights is not None:
        w = torch.where(keep, is_weights.detach().to(logp.dtype), zeros)
        loss_t = loss_t * w
        stats["is_weight_mean"] = float(masked_mean(w, keep))
    kl_value = 0.0
    if ref_logp is not None:
        ref_v = torch.where(keep, ref_logp.detach().to(logp.dtype), zeros)
        kl_t = kl_penalty(logp_v, ref_v, kl_estimator)
        kl_value = float(masked_mean(kl_t.detach(), keep))
        if beta > 0:
            loss_t = loss_t + beta * kl_t
    loss = reduce(loss_t, keep, max_tokens)
    stats.update(
        clip_frac_low=float(masked_mean(token.clipped_low.float(), keep)),
        clip_frac_high=float(masked_mean(token.clipped_high.float(), keep)),
        ratio_mean=float(masked_mean(token.ratio.detach().float(), keep)),
        kl=kl_value,
    )
    return loss, stats
