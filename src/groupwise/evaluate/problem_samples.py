"""Per-problem sampling: N completions per prompt, scored, reduced to (n, correct, mean reward)."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import torch

from groupwise.algorithms import success_threshold
from groupwise.config.schema import Config
from groupwise.data.prompts import prompt_key
from groupwise.environments.registry import configured_environment
from groupwise.rewards.compute import RewardFunction
from groupwise.rewards.rollout_scores import score_rollout
from groupwise.rollout.sampler import Sampler, as_sampler
from groupwise.rollout.streams import mix_key

Row = dict[str, Any]


def chunks(items: list[int], size: int) -> Iterator[list[int]]:
    for start in range(0, len(items), max(size, 1)):
        yield items[start:start + max(size, 1)]


def problems_per_chunk(cfg: Config, samples: int) -> int:
    """Prompts generated together so one chunk holds about eval.batch_size sequences (at least one prompt)."""
    return max(1, cfg.eval.batch_size // max(samples, 1))


def episode_sampler(model, cfg: Config) -> Sampler:
    """A sampler over `model` (kept when it is one), running the config's environment's episodes if it has one."""
    return as_sampler(model, cfg.rollout, configured_environment(cfg))


def generate_and_score(model, tokenizer, rows: list[Row], texts: list[str], rewards: list[RewardFunction],
                       cfg: Config, *, group: int, greedy: bool, temperature: float, top_p: float):
    """Generate `group` completions per prompt and score them with every reward function. A problem's samples
    come from streams keyed by its prompt and train.seed: the same wherever it lands in a batch or on a rank."""
    sampler = episode_sampler(model, cfg)
    keys = [mix_key(cfg.train.seed, int(prompt_key(row), 16)) for row in rows]
    rollout = sampler(tokenizer, texts, group_size=group, greedy=greedy, temperature=temperature, top_p=top_p,
                      keys=keys, rows=rows)
    return rollout, score_rollout(rollout, rows, texts, rewards, cfg, shaping=False)


def _mean(values: list[float]) -> float | None:
    finite = [v for v in values if not math.isnan(v)]
    return sum(finite) / len(finite) if finite else None


def sample_problems(model, tokenizer, rows: list[Row], texts: list[str], rewards: list[RewardFunction],
                    cfg: Config, *, samples: int, temperature: float | None = None, top_p: float | None = None
                    ) -> list[dict[str, Any]]:
    """Per problem: n samples, how many are correct (total >= threshold), mean reward (total and per fn)."""
    temperature = cfg.rollout.temperature if temperature is None else temperature
    top_p = cfg.rollout.top_p if top_p is None else top_p
    rollout, scores = generate_and_score(model, tokenizer, rows, texts, rewards, cfg, group=samples, greedy=False,
                                         temperature=temperature, top_p=top_p)
    total = torch.nan_to_num(scores.total, nan=-math.inf).view(len(rows), samples)
    threshold, out = success_threshold(cfg.algorithm.success_threshold), []
    for p in range(len(rows)):
        span = slice(p * samples, (p + 1) * samples)
        per_function = {name: _mean(scores.per_function[span, j].tolist())
                        for j, name in enumerate(scores.names)}
        out.append({"n": samples, "correct": int((total[p] >= threshold).sum()),
                    "mean_reward": _mean(scores.total[span].tolist()), "rewards": per_function,
                    "completions": rollout.completions[span], "sample_rewards": _finite(scores.total[span])})
    return out


def _finite(values: torch.Tensor) -> list[float | None]:
    return [None if math.isnan(v) else v for v in values.tolist()]


def greedy_results(model, tokenizer, rows: list[Row], texts: list[str], rewards: list[RewardFunction],
                   cfg: Config) -> list[dict[str, Any]]:
    """Each problem's greedy completion, its total reward, and whether it is correct (reward >= threshold)."""
    rollout, scores = generate_and_score(model, tokenizer, rows, texts, rewards, cfg, group=1, greedy=True,
                                         temperature=1.0, top_p=1.0)
    total = torch.nan_to_num(scores.total, nan=-math.inf)
    threshold = success_threshold(cfg.algorithm.success_threshold)
    return [{"correct": bool(v >= threshold), "completion": text, "reward": reward}
            for v, text, reward in zip(total, rollout.completions, _finite(scores.total), strict=True)]

