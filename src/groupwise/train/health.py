"""Per-step training-health metrics a loss curve hides: the largest per-token KL and the sampler/trainer mismatch.

The fast sampler decodes from a (bf16) copy of the policy, so the log-prob it recorded for a sampled token
(`Rollout.sampling_logp`) differs from the trainer's float32 log-prob of the same token. These metrics put
that gap, and the share of tokens TIS/MIS would cap, in metrics.jsonl whether or not
`algorithm.importance_sampling` corrects it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from groupwise.algorithms import kl_penalty
from groupwise.algorithms.masks import as_bool_mask
from groupwise.runtime.distributed import all_gather_objects


@dataclass
class HealthTokens:
    """The valid completion tokens of a step's micro-batches, flattened: trainer, sampler and reference log-probs."""

    train: list[Tensor] = field(default_factory=list)
    sampler: list[Tensor] = field(default_factory=list)
    ref: list[Tensor] = field(default_factory=list)

    def add(self, mask: Tensor, train_logp: Tensor, sampler_logp: Tensor, ref_logp: Tensor | None) -> None:
        """One micro-batch's [M, C] tensors; only tokens where `mask` is set are kept."""
        keep = as_bool_mask(mask)
        self.train.append(train_logp.detach()[keep].float().cpu())
        self.sampler.append(sampler_logp.detach()[keep].float().cpu())
        if ref_logp is not None:
            self.ref.append(ref_logp.detach()[keep].float().cpu())

    def metrics(self, kl_estimator: str, is_cap: float) -> dict[str, float]:
        """``health_metrics`` over the tokens of every rank: one process and several log the same values."""
        train = torch.cat(self.train) if self.train else torch.zeros(0)
        sampler = torch.cat(self.sampler) if self.sampler else torch.zeros(0)
        ref = torch.cat(self.ref) if self.ref else None
        # distributed: every rank's counts, sums and maxima (a rank may hold no tokens this step)
        return combined_health(all_gather_objects(health_parts(train, sampler, ref, kl_estimator, is_cap)))


def health_metrics(train_logp: Tensor, sampler_logp: Tensor, ref_logp: Tensor | None = None, *,
                   kl_estimator: str = "k3", is_cap: float = 2.0) -> dict[str, float]:
    """Max per-token KL (the loss's estimator) and |ref - train|; max/mean |log pi_train - log pi_sampler|;
    share of tokens with exp(log pi_train - log pi_sampler) > is_cap. Inputs: [N] valid tokens."""
    return combined_health([health_parts(train_logp, sampler_logp, ref_logp, kl_estimator, is_cap)])


def health_parts(train_logp: Tensor, sampler_logp: Tensor, ref_logp: Tensor | None, kl_estimator: str,
                 is_cap: float) -> dict[str, float]:
    """One share of the tokens ([N] each) as a token count, sums and maxima, which add up across ranks."""
    n = train_logp.numel()
    if n == 0:
        return {"tokens": 0}
    gap = (train_logp - sampler_logp).abs()
    out = {"tokens": n, "sampler_gap_max": float(gap.max()), "gap_sum": float(gap.sum()),
           "capped": float((torch.exp(train_logp - sampler_logp) > is_cap).sum())}
    if ref_logp is not None:
        out["kl_max"] = float(kl_penalty(train_logp, ref_logp, kl_estimator).max())
        out["ref_log_ratio_max"] = float((ref_logp - train_logp).abs().max())
    return out


def combined_health(parts: list[dict[str, float]]) -> dict[str, float]:
    """The health metrics of all the shares together: means over every token, maxima over every share."""
    n = sum(p["tokens"] for p in parts)
    if n == 0:
        return {}
    out = {"sampler_gap_max": max(p["sampler_gap_max"] for p in parts if p["tokens"]),
           "sampler_gap_mean": sum(p.get("gap_sum", 0.0) for p in parts) / n,
           "is_would_cap_frac": sum(p.get("capped", 0.0) for p in parts) / n}
    for key in ("kl_max", "ref_log_ratio_max"):
        if any(key in p for p in parts):
            out[key] = max(p[key] for p in parts if key in p)
    return out
