"""One GRPO training step, top to bottom: rollout -> reward -> advantage -> loss -> update."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from groupwise.algorithms import (
    focal_advantages,
    group_advantages,
    has_variance,
    importance_weights,
    learnable_fraction,
    policy_loss,
    success_rate,
)
from groupwise.config.schema import AlgorithmConfig, Config
from groupwise.rewards.compute import RewardFunction, Scores
from groupwise.rewards.rollout_scores import score_rollout
from groupwise.rollout.completions import Rollout, concat_rollouts, select_groups
from groupwise.rollout.streams import mix_key
from groupwise.runtime.distributed import (
    all_gather_objects,
    all_max,
    all_sum,
    all_sum_dict,
    full_tensor,
    on_every_rank,
    shard,
    sum_gradients,
    world_size,
)
from groupwise.runtime.memory import peak_memory
from groupwise.train.batch import MicroBatch, agg_count, micro_batch_logprobs, micro_batches
from groupwise.train.fsdp import IDLE, lockstep, sharded_forward
from groupwise.train.health import HealthTokens
from groupwise.train.policy import Policy

Rows = list[dict[str, Any]]


@dataclass
class Batch:
    """What one step trains on: the rollout, its rows, rewards and advantages, G completions per prompt."""

    rollout: Rollout
    rows: Rows  # one per prompt
    scores: Scores
    rewards: Tensor  # [P, G] total reward used for advantages (NaN: not scored)
    advantages: Tensor  # [P, G]
    sampling: dict[str, float] = field(default_factory=dict)
    origin: list[tuple[int, int]] = field(default_factory=list)  # per prompt: (sampling round, index in round)
    sampled_tokens: int = 0  # completion tokens sampled for this batch on every rank, dropped groups included
    fixed: dict[str, Tensor] = field(default_factory=dict)  # log-probs scored already (a producer's "ref")


def grpo_step(policy: Policy, tokenizer, optimizer: torch.optim.Optimizer, scheduler, cfg: Config,
              rewards: list[RewardFunction], prompts: Callable[[int], tuple[Rows, list[str]]], *, step: int = 0,
              collected: tuple[Batch, dict[str, float]] | None = None) -> dict[str, Any]:
    """Train on one rollout batch; `prompts(n)` hands out the next n rows and their rendered prompt texts;
    `step` (1-based) keys the completions' random streams. `collected`: the batch and its sampling times when a
    producer (train/producer.py) sampled and scored it already."""
    clock = time.perf_counter()
    if collected is None:
        timings: dict[str, float] = {}
        batch = collect_batch(policy, tokenizer, cfg, rewards, prompts, timings, step)  # rollout + reward + advantage
    else:
        batch, timings = collected[0], dict(collected[1])
    sampled_tokens = batch.sampled_tokens
    tick = time.perf_counter()
    loss_mask = completion_loss_mask(batch.rollout, cfg.algorithm.overlong_filter)
    advantages = batch.advantages.reshape(-1)
    fixed = reference_and_old_logprobs(policy, batch.rollout, loss_mask, cfg, batch.fixed)  # no-grad scoring pass
    timings["logprobs_s"] = time.perf_counter() - tick
    tick = time.perf_counter()
    update = policy_updates(policy, optimizer, batch.rollout, advantages, loss_mask, fixed, cfg)  # loss + update
    scheduler.step()
    timings["update_s"] = time.perf_counter() - tick
    timings["step_s"] = time.perf_counter() - clock
    whole = gather_batch(batch, tokenizer.pad_token_id)  # distributed: every rank's groups, in one-process order
    timings = {k: all_max(v) for k, v in timings.items()}  # distributed: the slowest rank's times
    return step_metrics(whole, update, timings, cfg) | {"lr": float(scheduler.get_last_lr()[0]), "_batch": whole,
                                                        "world_size": world_size(),
                                                        "sampled_tokens": sampled_tokens} | peak_memory()


def completion_loss_mask(rollout: Rollout, overlong_filter: bool) -> Tensor:
    """Tokens the loss sees [N, C]: the sampled ones (an episode's environment tokens are attended, not trained);
    DAPO's overlong filtering drops every token of a truncated completion."""
    mask = rollout.trained_mask.clone()
    if overlong_filter:
        mask[~rollout.ended_with_eos] = 0
    return mask


def completion_budget(cfg: Config) -> int:
    """The most tokens one completion can hold (Dr. GRPO's length normaliser): an episode's, or one turn's."""
    return cfg.rollout.max_episode_tokens if cfg.environment.enabled else cfg.rollout.max_new_tokens


def collect_batch(policy: Policy, tokenizer, cfg: Config, rewards: list[RewardFunction],
                  prompts: Callable[[int], tuple[Rows, list[str]]], timings: dict[str, float], step: int = 0
                  ) -> Batch:
    """Sample groups and score them; with dynamic sampling (DAPO), keep only groups whose rewards differ."""
    wanted, kept, rounds, consumed, have = cfg.rollout.prompts_per_step, [], 0, 0, 0
    sampled = 0  # completion tokens this rank sampled, in every round
    timings["generate_s"] = timings["reward_s"] = 0.0
    while True:
        rounds += 1
        rows, texts = prompts(wanted - have)  # every rank draws the whole round ...
        consumed += len(rows)
        mine = shard(len(rows))  # ... and samples and scores its own share of it
        keys = [mix_key(cfg.train.seed, step, rounds, index) for index in mine]
        if len(mine) or not kept:  # a failure on one rank (a reward, a bad row) stops every rank here
            batch = on_every_rank(rollout_and_score, policy, tokenizer, cfg, rewards, rows[mine.start:mine.stop],
                                  texts[mine.start:mine.stop], timings, keys)
            sampled += int(batch.rollout.lengths.sum())
        else:  # a refill round too small to reach this rank (it still takes part in the failure check)
            batch = on_every_rank(_subset, kept[0], [])
        batch.advantages = round_advantages(batch.rewards, mine, cfg.algorithm)
        batch.origin = [(rounds, index) for index in mine]
        if not cfg.algorithm.dynamic_sampling:
            batch.sampled_tokens = int(all_sum(sampled))
            return batch
        varied = [p for p in range(len(batch.rows)) if has_variance(batch.rewards[p])]
        kept.append(_subset(batch, varied))
        have = int(all_sum(sum(len(b.rows) for b in kept)))  # distributed: kept groups on every rank
        if have >= wanted or rounds >= cfg.algorithm.max_sampling_rounds:
            break
    merged = _merge(kept, tokenizer.pad_token_id) if have else batch
    merged.sampling = {"sampling_rounds": rounds, "prompts_consumed": consumed, "groups_kept": have}
    merged.sampled_tokens = int(all_sum(sampled))
    return merged


def rollout_and_score(policy: Policy, tokenizer, cfg: Config, rewards: list[RewardFunction], rows: Rows,
                      texts: list[str], timings: dict[str, float], keys: list[int] | None = None) -> Batch:
    tick = time.perf_counter()
    r = cfg.rollout
    rollout = policy.sample(tokenizer, texts, r, keys, rows)
    timings["generate_s"] += time.perf_counter() - tick
    tick = time.perf_counter()
    scores = score_rollout(rollout, rows, texts, rewards, cfg)
    timings["reward_s"] += time.perf_counter() - tick
    total = scores.total.view(len(rows), r.group_size)
    return Batch(rollout, rows, scores, total, compute_advantages(total, cfg.algorithm))


def round_advantages(rewards: Tensor, mine: range, a: AlgorithmConfig) -> Tensor:
    """This rank's advantages [p, G] computed over the whole round's rewards, so `scale: batch` spans every rank."""
    everyone = torch.cat(all_gather_objects(rewards)) if world_size() > 1 else rewards  # [P, G]
    return compute_advantages(everyone, a)[mine.start:mine.stop]


def compute_advantages(rewards: Tensor, a: AlgorithmConfig) -> Tensor:
    """Group-relative advantages [P, G], scaled by F-GRPO's focal weight when focal_gamma > 0."""
    advantages = group_advantages(rewards, scale=a.scale, eps=a.adv_eps, baseline=a.baseline)
    if a.focal_gamma > 0:
        advantages = focal_advantages(advantages, rewards, a.focal_gamma, a.success_threshold)
    return advantages


def _subset(batch: Batch, groups: list[int]) -> Batch:
    g = batch.rollout.group_size
    rows = torch.tensor([p * g + i for p in groups for i in range(g)], dtype=torch.long)
    scores = Scores(batch.scores.per_function[rows], batch.scores.total[rows], batch.scores.names,
                    batch.scores.errors, {k: v[rows] for k, v in batch.scores.diagnostics.items()})
    return Batch(select_groups(batch.rollout, groups), [batch.rows[p] for p in groups], scores,
                 batch.rewards[groups], batch.advantages[groups],
                 origin=[batch.origin[p] for p in groups] if batch.origin else [])


def _merge(batches: list[Batch], pad_id: int) -> Batch:
    batches = [b for b in batches if b.rows] or batches[:1]  # a rank may have kept no group at all
    scores = Scores(torch.cat([b.scores.per_function for b in batches]), torch.cat([b.scores.total for b in batches]),
                    batches[0].scores.names, batches[0].scores.errors,
                    {k: torch.cat([b.scores.diagnostics[k] for b in batches]) for k in batches[0].scores.diagnostics
                     if all(k in b.scores.diagnostics for b in batches)})
    return Batch(concat_rollouts([b.rollout for b in batches], pad_id), [r for b in batches for r in b.rows], scores,
                 torch.cat([b.rewards for b in batches]), torch.cat([b.advantages for b in batches]),
                 origin=[o for b in batches for o in b.origin])


def gather_batch(batch: Batch, pad_id: int) -> Batch:
    """Every rank's groups in one batch, ordered as one process would hold them (by sampling round, then index):
    what metrics, samples.jsonl and the difficulty filter see. The identity on one process."""
    if world_size() == 1:
        return batch
    parts = all_gather_objects(batch)
    merged = _merge(parts, pad_id)
    order = sorted(range(len(merged.rows)), key=lambda p: merged.origin[p])
    whole = _subset(merged, order)
    errors: dict[str, int] = {}
    for part in parts:
        for name, count in part.scores.errors.items():
            errors[name] = errors.get(name, 0) + count
    whole.scores.errors, whole.sampling = errors, batch.sampling
    return whole


def _needs_old_logprobs(cfg: Config) -> bool:
    """With one update per rollout the policy has not moved: old log-probs equal the current ones, detached."""
    return cfg.algorithm.num_iterations > 1 or cfg.algorithm.mini_batches > 1


@torch.no_grad()
def reference_and_old_logprobs(policy: Policy, rollout: Rollout, loss_mask: Tensor, cfg: Config,
                               known: dict[str, Tensor] | None = None, old: bool = True) -> dict[str, Tensor]:
    """Log-probs that stay fixed during the updates: the reference's (beta > 0) and the old policy's (`old`);
    those in `known` are not scored again."""
    out: dict[str, Tensor] = dict(known or {})
    score_ref, score_old = cfg.algorithm.beta > 0 and "ref" not in out, old and _needs_old_logprobs(cfg)
    if not (score_ref or score_old):
        return out  # nothing to score: no micro-batches built (an async step whose producer scored the reference)
    rows = torch.arange(len(rollout.completions))
    chunks = lockstep(micro_batches(rollout, rows, cfg.train.micro_batch_size, loss_mask), policy.sharded)
    temperature = cfg.rollout.temperature
    if score_ref:
        with policy.as_reference() as reference, policy.training_precision():
            out["ref"] = _gather(chunks, rollout, lambda mb: _logprobs(reference, mb, cfg, temperature)[0])
    if score_old:
        with policy.training_precision():
            out["old"] = _gather(chunks, rollout, lambda mb: _logprobs(policy.model, mb, cfg, temperature)[0])
    return out


def _gather(chunks: list[MicroBatch | None], rollout: Rollout, fn) -> Tensor:
    full = torch.zeros(rollout.completion_ids.shape, dtype=torch.float32)
    for mb in chunks:
        values = fn(mb or IDLE)  # None: an idle pass that keeps FSDP's collectives in step (train/fsdp.py)
        if mb is not None:
            full[mb.rows, : values.shape[1]] = values.float().cpu()
    return full


def _logprobs(model, mb: MicroBatch, cfg: Config, temperature: float) -> tuple[Tensor, Tensor]:
    device = next(model.parameters()).device
    # gradient checkpointing drops the KV cache that prompt sharing hands from prompt to completions
    return sharded_forward(model, micro_batch_logprobs, mb.to(device), chunk=cfg.train.logprob_chunk,
                           temperature=temperature, shared_prompts=not cfg.model.gradient_checkpointing)


def policy_updates(policy: Policy, optimizer: torch.optim.Optimizer, rollout: Rollout, advantages: Tensor,
                   loss_mask: Tensor, fixed: dict[str, Tensor], cfg: Config) -> dict[str, float]:
    """num_iterations x mini_batches optimizer steps over the batch, accumulating gradients over micro-batches."""
    a, n = cfg.algorithm, len(rollout.completions)
    stats: dict[str, list[float]] = {}
    generator = torch.Generator().manual_seed(cfg.train.seed)
    for _ in range(a.num_iterations):
        order = torch.randperm(n, generator=generator) if a.mini_batches > 1 else torch.arange(n)
        for rows in order.chunk(a.mini_batches):
            mini_stats = one_optimizer_step(policy, optimizer, rollout, rows, advantages, loss_mask, fixed, cfg)
            for k, v in mini_stats.items():
                stats.setdefault(k, []).append(v)
    # maxima stay maxima across optimizer steps; the rest is averaged
    return {k: max(v) if k.endswith("_max") else sum(v) / len(v) for k, v in stats.items()}


def one_optimizer_step(policy: Policy, optimizer: torch.optim.Optimizer, rollout: Rollout, rows: Tensor,
                       advantages: Tensor, loss_mask: Tensor, fixed: dict[str, Tensor], cfg: Config
                       ) -> dict[str, float]:
    a, device = cfg.algorithm, next(policy.model.parameters()).device
    optimizer.zero_grad(set_to_none=True)
    sums: dict[str, float] = {}
    total_loss = 0.0
    health = HealthTokens()  # per-token KL and sampler/trainer gap over the whole optimizer step
    batch_count = all_sum(agg_count(a.agg, loss_mask[rows]))  # distributed: tokens/sequences on every rank
    batch_tokens = all_sum(agg_count("token-mean", loss_mask[rows]))  # logged stats are token means
    for mb in lockstep(micro_batches(rollout, rows, cfg.train.micro_batch_size, loss_mask), policy.sharded):
        with policy.training_precision():
            logp, entropy = _logprobs(policy.model, mb or IDLE, cfg, cfg.rollout.temperature)
        if mb is None:  # FSDP2: this rank is out of rows but joins the others' passes, with a zero gradient
            (logp.sum() * 0).backward()
            continue
        mask = mb.completion_mask.to(device)
        old = mb.take(fixed["old"]).to(device) if "old" in fixed else logp.detach()
        ref = mb.take(fixed["ref"]).to(device) if "ref" in fixed else None
        sampler_logp = mb.take(rollout.sampling_logp).to(device)
        health.add(mask, old, sampler_logp, ref)
        is_weights, is_stats = None, {}
        if a.importance_sampling != "off":
            is_weights, is_stats = importance_weights(old, sampler_logp, mask,
                                                      level=a.importance_sampling, mode=a.is_mode, cap=a.is_cap)
        loss, stats = policy_loss(logp, old, advantages[mb.rows].to(device), mask, kind=a.loss,
                                  eps_low=a.eps_low, eps_high=a.eps_high, agg=a.agg,
                                  max_tokens=completion_budget(cfg), ref_logp=ref, beta=a.beta,
                                  kl_estimator=a.kl_estimator, is_weights=is_weights, dual_clip=a.dual_clip)
        share = agg_count(a.agg, mb.completion_mask) / max(batch_count, 1)
        token_share = agg_count("token-mean", mb.completion_mask) / max(batch_tokens, 1)
        (loss * share).backward()
        total_loss += float(loss.detach()) * share
        valid = mask.sum().clamp(min=1)
        stats = stats | is_stats | {"entropy": float((entropy * mask).sum() / valid)}
        for k, v in stats.items():
            v = float(v)
            sums[k] = max(sums.get(k, v), v) if k.endswith("_max") else sums.get(k, 0.0) + v * token_share
    if not policy.sharded:  # FSDP2 reduce-scattered the sharded gradients in backward already
        sum_gradients(policy.trainable_parameters())  # distributed: the whole batch's gradient on every rank
    maxima = {k: all_max(v) for k, v in sums.items() if k.endswith("_max")}
    total_loss, sums = all_sum(total_loss), all_sum_dict(sums) | maxima
    grad_norm = float(full_tensor(torch.nn.utils.clip_grad_norm_(policy.trainable_parameters(),
                                                                  cfg.train.max_grad_norm)))
    finite = math.isfinite(total_loss) and math.isfinite(grad_norm)
    if finite:
        optimizer.step()
        policy.updated()
    optimizer.zero_grad(set_to_none=True)
    return sums | health.metrics(a.kl_estimator, a.is_cap) | {"loss": total_loss, "grad_norm": grad_norm,
                                                              "skipped_update": float(not finite)}


def step_metrics(batch: Batch, update: dict[str, float], timings: dict[str, float], cfg: Config) -> dict[str, Any]:
    """Everything worth plotting about one step."""
    r, scores = batch.rollout, batch.scores
    metrics: dict[str, Any] = {}
    for j, name in enumerate(scores.names):
        column = scores.per_function[:, j]
        valid = column[~torch.isnan(column)]
        metrics[f"reward/{name}/mean"] = float(valid.mean()) if valid.numel() else math.nan
        metrics[f"reward/{name}/std"] = float(valid.std()) if valid.numel() > 1 else 0.0
    total = batch.rewards[~torch.isnan(batch.rewards)]
    metrics["reward/mean"] = float(total.mean()) if total.numel() else math.nan
    metrics["reward/std"] = float(total.std()) if total.numel() > 1 else 0.0
    metrics["learnable_fraction"] = learnable_fraction(batch.rewards)
    metrics["success_rate"] = float(success_rate(batch.rewards, cfg.algorithm.success_threshold).mean())
    lengths = r.lengths.float()
    metrics |= {"completion_len/mean": float(lengths.mean()), "completion_len/max": float(lengths.max()),
                "truncated_fraction": float((~r.ended_with_eos).float().mean())}
    metrics |= {k: v for k, v in update.items()}
    metrics |= {k: round(v, 3) for k, v in timings.items()}
    metrics["tokens_per_s"] = float(lengths.sum()) / max(timings.get("generate_s", 0.0), 1e-9)
    metrics |= batch.sampling
    if r.episodes is not None:  # env/turns_mean, env/tool_calls_mean, env/tool_errors, env/truncated_frac
        metrics |= r.episodes.metrics(r.ended_with_eos)
    for name, count in scores.errors.items():
        metrics[f"reward/{name}/errors"] = count
    for key, column in scores.diagnostics.items():  # e.g. reward/code_tests/tests_not_run: share of scored samples
        valid = column[~torch.isnan(column)]
        metrics[f"reward/{key}"] = float(valid.mean()) if valid.numel() else math.nan
    return metrics
