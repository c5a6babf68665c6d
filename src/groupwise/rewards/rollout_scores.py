"""A rollout's rewards: each row's columns handed to every reward function beside its completion."""

from __future__ import annotations

from typing import Any

import torch

from groupwise.algorithms import soft_overlong_penalty
from groupwise.config.schema import Config
from groupwise.rewards.compute import RewardFunction, Scores, score_batch
from groupwise.rollout.completions import Rollout
from groupwise.rollout.episodes.log import EpisodeLog, environment_rewards

Rows = list[dict[str, Any]]
ENVIRONMENT = "environment"  # the reward column of a step-style environment's own rewards


def score_rollout(rollout: Rollout, rows: Rows, texts: list[str], rewards: list[RewardFunction],
                  cfg: Config, *, shaping: bool = True) -> Scores:
    """Every reward function over the batch; in training (`shaping`), DAPO's soft overlong punishment joins
    as one more column. Evaluation leaves it out: a right answer stays right however long it is.
    Episodes: reward functions also get `environments=` (the instances, as TRL passes them) and, when written
    for TRL, each episode's messages as its completion; a step-style environment's rewards are one more column."""
    g, episodes = rollout.group_size, rollout.episodes
    columns = {k: [row.get(k) for row in rows for _ in range(g)] for k in {k for row in rows for k in row}}
    columns.pop("prompt", None)
    ids = [seq[: int(n)].tolist() for seq, n in zip(rollout.completion_ids, rollout.lengths, strict=True)]
    prompts = [t for t in texts for _ in range(g)] if episodes is None else episodes.prompts
    raw = [row.get("prompt", text) for row, text in zip(rows, texts, strict=True) for _ in range(g)]
    if episodes is not None:
        columns["environments"] = episodes.environments or [None] * len(ids)
    scores = score_batch(rewards, prompts, rollout.completions, ids, columns, workers=cfg.rewards.workers,
                         timeout_s=cfg.rewards.timeout_s, on_error=cfg.rewards.on_error, raw_prompts=raw,
                         conversations=None if episodes is None else episodes.completion_messages())
    if episodes is not None and episodes.scored:
        scores = with_environment_rewards(scores, episodes)
    if shaping and cfg.algorithm.soft_overlong:
        # a truncated completion counts as one token over the limit: DAPO punishes it fully (-1)
        lengths = rollout.lengths + (~rollout.ended_with_eos).long()
        limit = cfg.rollout.max_episode_tokens if episodes is not None else cfg.rollout.max_new_tokens
        penalty = soft_overlong_penalty(lengths, limit, cfg.algorithm.overlong_cache)
        scores = Scores(torch.cat([scores.per_function, penalty[:, None].float()], dim=1),
                        torch.nan_to_num(scores.total, nan=0.0) + penalty, scores.names + ["soft_overlong"],
                        scores.errors, scores.diagnostics)
    return scores


def with_environment_rewards(scores: Scores, episodes: EpisodeLog) -> Scores:
    """`scores` with the environment's rewards as a column of weight 1 (NaN where it gave none) added to the total;
    failed episodes (rewards.on_error: zero) score 0 there and are counted as its errors."""
    column = environment_rewards(episodes)
    given = ~torch.isnan(column)
    total = torch.where(given, torch.nan_to_num(scores.total, nan=0.0) + torch.nan_to_num(column), scores.total)
    errors = dict(scores.errors)
    if any(episodes.failed):
        errors[ENVIRONMENT] = sum(episodes.failed)
    return Scores(torch.cat([scores.per_function, column[:, None]], dim=1), total, scores.names + [ENVIRONMENT],
                  errors, scores.diagnostics)
