"""Micro-batches of a rollout for the training forward: distinct prompts once, completions trimmed of padding."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from groupwise.models.logprobs import sequence_logprobs, shared_prompt_logprobs
from groupwise.rollout.completions import Rollout


@dataclass
class MicroBatch:
    rows: Tensor  # [M] indices into the rollout
    prompt_ids: Tensor  # [U, P] the distinct prompts of these rows, left-padded
    prompt_mask: Tensor  # [U, P]
    prompt_of_row: Tensor  # [M] index into the U prompts
    completion_ids: Tensor  # [M, C]
    completion_attention: Tensor  # [M, C] 1 for real tokens
    completion_mask: Tensor  # [M, C] 1 where the loss applies

    def take(self, per_row: Tensor) -> Tensor:
        """The slice of a rollout-wide [N, C_max] tensor that lines up with this micro-batch's completions."""
        return per_row[self.rows, : self.completion_ids.shape[1]]

    def to(self, device: torch.device) -> MicroBatch:
        return MicroBatch(*(t.to(device) for t in (self.rows, self.prompt_ids, self.prompt_mask,
                                                   self.prompt_of_row, self.completion_ids,
                                                   self.completion_attention, self.completion_mask)))


def micro_batches(rollout: Rollout, rows: Tensor, size: int, loss_mask: Tensor) -> list[MicroBatch]:
    """Split `rows` into micro-batches of `size`; each keeps one copy per distinct prompt and no padding columns."""
    out = []
    for start in range(0, len(rows), size):
        idx = rows[start:start + size]
        groups, prompt_of_row = torch.unique(idx // rollout.group_size, return_inverse=True)
        first_rows = groups * rollout.group_size
        prompt_mask = rollout.prompt_mask[first_rows]
        first = int((prompt_mask.sum(0) > 0).nonzero()[0]) if prompt_mask.any() else 0
        attention = rollout.completion_mask[idx]
        width = int(attention.sum(-1).max().clamp(min=1))
        out.append(MicroBatch(idx, rollout.prompt_ids[first_rows, first:], prompt_mask[:, first:], prompt_of_row,
                              rollout.completion_ids[idx, :width], attention[:, :width],
                              loss_mask[idx, :width].to(attention.dtype)))
    return out


def micro_batch_logprobs(model, mb: MicroBatch, *, chunk: int, temperature: float, shared_prompts: bool = True
                         ) -> tuple[Tensor, Tensor]:
    """Per-token log-probs and entropies [M, C]: shared-prompt path, or the plain concatenated twin."""
    if shared_prompts:
        return shared_prompt_logprobs(model, mb.prompt_ids, mb.prompt_mask, mb.prompt_of_row, mb.completion_ids,
                                      mb.completion_attention, chunk=chunk, temperature=temperature)
    input_ids = torch.cat([mb.prompt_ids[mb.prompt_of_row], mb.completion_ids], dim=1)
    attention = torch.cat([mb.prompt_mask[mb.prompt_of_row], mb.completion_attention], dim=1)
    return sequence_logprobs(model, input_ids, attention, mb.prompt_ids.shape[1], chunk=chunk,
                             temperature=temperature)


def agg_count(agg: str, mask: Tensor) -> float:
    """What an `algorithm.agg` mode divides by: tokens (token-mean), every sequence (Dr. GRPO's
    seq-mean-token-sum-norm, masked ones included) or sequences with a loss token (seq-mean-token-mean)."""
    if agg == "token-mean":
        return float(mask.sum())
    if agg == "seq-mean-token-sum-norm":
        return float(mask.shape[0])
    return float((mask.sum(-1) > 0).sum())

