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
        train, sampler = torch.cat(self.train), torch.cat(self.sampler)
        ref = torch.cat(self.ref) if self.ref else None
        return health_metrics(train, sampler, ref, kl_estimator=kl_estimator, is_cap=is_cap)


def health_metrics(train_logp: Tensor, sampler_logp: Tensor, ref_logp: Tensor | None = None, *,
                   kl_estimator: str = "k3", is_cap: float = 2.0) -> dict[str, float]:
    """Max per-token KL (the loss's estimator) and |ref - train|; max/mean |log pi_train - log pi_sampler|;
    share of tokens with exp(log pi_train - log pi_sampler) > is_cap. Inputs: [N] valid tokens."""
    if train_logp.numel() == 0:
        return {}
    gap = (train_logp - sampler_logp).abs()
    out = {"sampler_gap_max": float(gap.max()), "sampler_gap_mean": float(gap.mean()),
           "is_would_cap_frac": float((torch.exp(train_logp - sampler_logp) > is_cap).float().mean())}
    if ref_logp is not None:
        out["kl_max"] = float(kl_penalty(train_logp, ref_logp, kl_estimator).max())
        out["ref_log_ratio_max"] = float((ref_logp - train_logp).abs().max())
    return out
