"""Micro-batches of a rollout for the training forward: prompt + completion, trimmed of all-padding columns."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from groupwise.rollout.generate import Rollout


@dataclass
class MicroBatch:
    rows: Tensor  # [M] indices into the rollout
    input_ids: Tensor  # [M, P + C]
    attention_mask: Tensor  # [M, P + C]
    completion_start: int  # P
    completion_mask: Tensor  # [M, C]

    def take(self, per_row: Tensor) -> Tensor:
        """The slice of a rollout-wide [N, C_max] tensor that lines up with this micro-batch's completions."""
        return per_row[self.rows, : self.completion_mask.shape[1]]


def micro_batches(rollout: Rollout, rows: Tensor, size: int, loss_mask: Tensor) -> list[MicroBatch]:
    """Split `rows` of the rollout into micro-batches of `size`; each drops columns that are padding everywhere."""
    out = []
    for start in range(0, len(rows), size):
        idx = rows[start:start + size]
        prompt_mask = rollout.prompt_mask[idx]
        first = int((prompt_mask.sum(0) > 0).nonzero()[0]) if prompt_mask.any() else 0
        completion_mask = rollout.completion_mask[idx]
        width = int(completion_mask.sum(-1).max().clamp(min=1))
        input_ids = torch.cat([rollout.prompt_ids[idx, first:], rollout.completion_ids[idx, :width]], dim=1)
        attention = torch.cat([prompt_mask[:, first:], completion_mask[:, :width]], dim=1)
        out.append(MicroBatch(idx, input_ids, attention, rollout.prompt_ids.shape[1] - first,
                              (loss_mask[idx, :width]).to(completion_mask.dtype)))
    return out


def loss_share(agg: str, batch_mask: Tensor, micro_mask: Tensor) -> float:
    """Weight of a micro-batch's aggregated loss so that summed micro-batch losses equal the full-batch loss."""
    if agg == "token-mean":
        return float(micro_mask.sum() / batch_mask.sum().clamp(min=1))
    return float((micro_mask.sum(-1) > 0).sum() / (batch_mask.sum(-1) > 0).sum().clamp(min=1))
