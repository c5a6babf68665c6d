"""Held-out evaluation: greedy accuracy and sampled mean reward of a model on rows it never trained on."""

from __future__ import annotations

import math
from typing import Any

import torch

from groupwise.algorithms import success_threshold
from groupwise.config.schema import Config
from groupwise.evaluate.problem_samples import episode_sampler, generate_and_score
from groupwise.rewards.compute import RewardFunction
from groupwise.runtime.distributed import all_gather_objects, on_every_rank, shard


def evaluate_rows(model, tokenizer, rows: list[dict[str, Any]], texts: list[str], rewards: list[RewardFunction],
                  cfg: Config, *, samples: int | None = None, progress=None) -> dict[str, Any]:
    """Greedy accuracy (total reward >= success threshold) and mean reward per function over `samples` samples.
    Under torchrun each rank evaluates its share of the rows and the counts are gathered: the same result."""
    samples = cfg.eval.samples if samples is None else samples
    mine = shard(len(rows))
    share = on_every_rank(_score_share, episode_sampler(model, cfg), tokenizer, rows[mine.start:mine.stop],
                          texts[mine.start:mine.stop], rewards, cfg, samples, progress)
    parts = all_gather_objects(share)  # distributed: every rank's share, in rank order
    greedy_hits, sampled_total = sum(p[0] for p in parts), [v for p in parts for v in p[2]]
    sampled = {f.name: [v for p in parts for v in p[1][f.name]] for f in rewards}
    result = {"problems": len(rows), "greedy_accuracy": greedy_hits / max(len(rows), 1)}
    if samples:
        result["sampled_mean_reward"] = sum(sampled_total) / max(len(sampled_total), 1)
        result["sampled_reward_per_function"] = {k: sum(v) / max(len(v), 1) for k, v in sampled.items()}
    return result


def _score_share(sampler, tokenizer, rows, texts, rewards, cfg: Config, samples: int, progress
                 ) -> tuple[int, dict[str, list[float]], list[float]]:
    """This rank's rows: greedy hits, and the finite sampled rewards per function and in total."""
    threshold = success_threshold(cfg.algorithm.success_threshold)
    greedy_hits, sampled = 0, {f.name: [] for f in rewards}
    sampled_total: list[float] = []
    size = cfg.eval.batch_size
    for start in range(0, len(rows), size):
        chunk_rows, chunk_texts = rows[start:start + size], texts[start:start + size]
        greedy = _score(sampler, tokenizer, chunk_rows, chunk_texts, rewards, cfg, group=1, greedy=True)
        greedy_hits += int((torch.nan_to_num(greedy.total, nan=-math.inf) >= threshold).sum())
        if samples:
            scored = _score(sampler, tokenizer, chunk_rows, chunk_texts, rewards, cfg, group=samples, greedy=False)
            for j, f in enumerate(rewards):
                sampled[f.name] += [v for v in scored.per_function[:, j].tolist() if not math.isnan(v)]
            sampled_total += [v for v in scored.total.tolist() if not math.isnan(v)]
        if progress is not None:
            progress(len(chunk_rows))
    return greedy_hits, sampled, sampled_total


def _score(sampler, tokenizer, rows, texts, rewards, cfg: Config, *, group: int, greedy: bool):
    _, scores = generate_and_score(sampler, tokenizer, rows, texts, rewards, cfg, group=group, greedy=greedy,
                                   temperature=cfg.rollout.temperature, top_p=cfg.rollout.top_p)
    return scores
