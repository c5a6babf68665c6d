"""A rollout's rewards: each row's columns handed to every reward function beside its completion."""

from __future__ import annotations

from typing import Any

import torch

from groupwise.algorithms import soft_overlong_penalty
from groupwise.config.schema import Config
from groupwise.rewards.compute import RewardFunction, Scores, score_batch
from groupwise.rollout.completions import Rollout

Rows = list[dict[str, Any]]


def score_rollout(rollout: Rollout, rows: Rows, texts: list[str], rewards: list[RewardFunction],
                  cfg: Config, *, shaping: bool = True) -> Scores:
    """Every reward function over the batch; in training (`shaping`), DAPO's soft overlong punishment joins
    as one more column. Evaluation leaves it out: a right answer stays right however long it is."""
    g = rollout.group_size
    columns = {k: [row.get(k) for row in rows for _ in range(g)] for k in {k for row in rows for k in row}}
    columns.pop("prompt", None)
    ids = [seq[: int(n)].tolist() for seq, n in zip(rollout.completion_ids, rollout.lengths, strict=True)]
    prompts = [t for t in texts for _ in range(g)]
    raw = [row.get("prompt", text) for row, text in zip(rows, texts, strict=True) for _ in range(g)]
    scores = score_batch(rewards, prompts, rollout.completions, ids, columns, workers=cfg.rewards.workers,
                         timeout_s=cfg.rewards.timeout_s, on_error=cfg.rewards.on_error, raw_prompts=raw)
    if shaping and cfg.algorithm.soft_overlong:
        # a truncated completion counts as one token over the limit: DAPO punishes it fully (-1)
        lengths = rollout.lengths + (~rollout.ended_with_eos).long()
        penalty = soft_overlong_penalty(lengths, cfg.rollout.max_new_tokens, cfg.algorithm.overlong_cache)
        scores = Scores(torch.cat([scores.per_function, penalty[:, None].float()], dim=1),
                        torch.nan_to_num(scores.total, nan=0.0) + penalty, scores.names + ["soft_overlong"],
                        scores.errors, scores.diagnostics)
    return scores

