"""`groupwise train`: set up model, data and rewards, run the GRPO steps, write the run folder."""

from __future__ import annotations

import json
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from groupwise.config.load import dump_config
from groupwise.config.schema import Config
from groupwise.data.prompts import render_prompt
from groupwise.data.source import load_rows
from groupwise.evaluate.accuracy import evaluate_rows
from groupwise.models.load import load_model_and_tokenizer, resolve_device
from groupwise.rewards.compute import build_reward_functions
from groupwise.train.metrics import MetricsLog, write_samples
from groupwise.train.optim import build_optimizer
from groupwise.train.policy import Policy, wrap_policy
from groupwise.train.progress import StepProgress
from groupwise.train.step import grpo_step


@dataclass
class PromptStream:
    """Training rows in a seeded shuffled order, epoch after epoch; `cursor` is all the state resume needs."""

    rows: list[dict[str, Any]]
    texts: list[str]
    seed: int
    cursor: int = 0
    order: list[int] = field(default_factory=list)

    def _epoch_order(self, epoch: int) -> list[int]:
        order = list(range(len(self.rows)))
        random.Random(f"{self.seed}:{epoch}").shuffle(order)
        return order

    def __call__(self, n: int) -> tuple[list[dict[str, Any]], list[str]]:
        picked = []
        for _ in range(n):
            epoch, index = divmod(self.cursor, len(self.rows))
            if index == 0 or not self.order:
                self.order = self._epoch_order(epoch)
            picked.append(self.order[index])
            self.cursor += 1
        return [self.rows[i] for i in picked], [self.texts[i] for i in picked]


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def render_all(rows: list[dict[str, Any]], tokenizer, cfg: Config) -> list[str]:
    d = cfg.data
    return [render_prompt(row, tokenizer, template=d.prompt_template, system_prompt=d.system_prompt,
                          chat_template=d.chat_template) for row in rows]


def train(cfg: Config, run_dir: Path, *, console=None) -> dict[str, Any]:
    """Run the configured job; returns the summary also written to run_dir/summary.json."""
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(dump_config(cfg))
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    seed_everything(cfg.train.seed)
    device = resolve_device(cfg.model.device)
    model, tokenizer = load_model_and_tokenizer(cfg.model.name, gguf_file=cfg.model.gguf_file,
                                                dtype=cfg.model.dtype, cache_dir=cfg.model.cache_dir,
                                                seed=cfg.train.seed)
    model.to(device)
    rewards = build_reward_functions(cfg.rewards.functions, cfg.sandbox.model_dump())
    train_rows = load_rows(cfg.data, "train")
    stream = PromptStream(train_rows, render_all(train_rows, tokenizer, cfg), cfg.data.seed)
    heldout = load_rows(cfg.data, "heldout")[: cfg.eval.num_problems] if _evaluates(cfg) else []
    heldout_texts = render_all(heldout, tokenizer, cfg)
    summary: dict[str, Any] = {"run_dir": str(run_dir)}
    if cfg.eval.before_after:
        summary["base"] = _evaluate(model, tokenizer, heldout, heldout_texts, rewards, cfg, console, "base")
    policy = wrap_policy(model, cfg)
    optimizer, scheduler = build_optimizer(policy.trainable_parameters(), cfg.train)
    log = MetricsLog(run_dir, cfg.log.tensorboard)
    started = time.perf_counter()
    low_streak = 0
    with StepProgress(cfg.train.steps, enabled=cfg.log.progress, console=console) as progress:
        for step in range(1, cfg.train.steps + 1):
            metrics = grpo_step(policy, tokenizer, optimizer, scheduler, cfg, rewards, stream)
            batch = metrics.pop("_batch")
            if cfg.eval.every and step % cfg.eval.every == 0:
                result = evaluate_rows(policy.model, tokenizer, heldout, heldout_texts, rewards, cfg, samples=0)
                metrics["eval/greedy_accuracy"] = result["greedy_accuracy"]
            log.write(step, metrics)
            if cfg.log.samples_per_step:
                write_samples(run_dir / "samples.jsonl", step, batch, cfg.log.samples_per_step)
            low_streak = low_streak + 1 if metrics["learnable_fraction"] < cfg.log.learnable_warn_below else 0
            if low_streak == cfg.log.learnable_warn_steps:
                progress.warn(learnability_warning(metrics, cfg))
            progress.update(step, metrics)
    summary["train_minutes"] = round((time.perf_counter() - started) / 60, 2)
    log.close()
    save_final(policy, tokenizer, run_dir / "final")
    if cfg.eval.before_after:
        summary["trained"] = _evaluate(policy.model, tokenizer, heldout, heldout_texts, rewards, cfg, console,
                                       "trained")
        summary["gain_points"] = round(100 * (summary["trained"]["greedy_accuracy"]
                                              - summary["base"]["greedy_accuracy"]), 1)
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def _evaluates(cfg: Config) -> bool:
    return cfg.eval.before_after or cfg.eval.every > 0


def _evaluate(model, tokenizer, rows, texts, rewards, cfg: Config, console, label: str) -> dict[str, Any]:
    from groupwise.train.progress import count_progress

    with count_progress(len(rows), f"eval {label}", enabled=cfg.log.progress, console=console) as advance:
        return evaluate_rows(model, tokenizer, rows, texts, rewards, cfg, progress=advance)


def learnability_warning(metrics: dict[str, Any], cfg: Config) -> str:
    """Name the likely reason groups stopped differing, and the fix."""
    if metrics.get("truncated_fraction", 0) > 0.5:
        cause = "most completions are truncated: raise rollout.max_new_tokens or reward shorter answers"
    elif metrics.get("success_rate", 0) > 0.5:
        cause = "the task is too easy (all-correct groups): use `groupwise select --keep hardest:0.1`"
    elif metrics.get("reward/std", 0) == 0 and metrics.get("reward/mean", 0) == 0:
        cause = ("no completion earns any reward: the task is too hard or a reward function never matches; "
                 "check samples.jsonl, use `groupwise select`, a larger rollout.group_size or "
                 "algorithm.dynamic_sampling: true")
    else:
        cause = "use a larger rollout.group_size or algorithm.dynamic_sampling: true"
    return (f"learnable fraction below {cfg.log.learnable_warn_below} for {cfg.log.learnable_warn_steps} steps: "
            f"{cause}")


def save_final(policy: Policy, tokenizer, folder: Path) -> None:
    """The adapter (LoRA) or the full model, with the tokenizer, in Hugging Face format."""
    folder.mkdir(parents=True, exist_ok=True)
    policy.model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
