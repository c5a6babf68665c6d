"""`groupwise train --preflight`: sample a few groups with the base model and predict the learning signal.

Before any training it shows the expected learnable fraction (groups whose rewards differ), the reward
distribution and the truncation rate, so a task that is too easy, too hard or too long is caught early.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

import torch
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from groupwise.algorithms import learnable_fraction, success_threshold
from groupwise.config.schema import Config
from groupwise.data.prompts import render_prompts
from groupwise.data.source import load_rows
from groupwise.data.stream import PromptStream
from groupwise.evaluate.problem_samples import generate_and_score
from groupwise.models.load import load_configured_model
from groupwise.rewards.answer_check import answer_format_warning
from groupwise.rewards.compute import configured_rewards
from groupwise.runtime.seeding import seed_everything
from groupwise.train.loop import learnability_warning

PREFLIGHT_PROMPTS = 8


def preflight(cfg: Config, prompts: int = PREFLIGHT_PROMPTS) -> dict[str, Any]:
    """Sample `prompts` x group_size completions as step 1 would, and summarize their rewards."""
    seed_everything(cfg.train.seed)
    rewards = configured_rewards(cfg)
    model, tokenizer = load_configured_model(cfg)
    model.eval()
    pool = load_rows(cfg.data, "train")
    rows, _ = PromptStream(pool, [""] * len(pool), cfg.data.seed)(min(prompts, len(pool)))
    r = cfg.rollout
    texts = render_prompts(rows, tokenizer, cfg.data)
    rollout, scores = generate_and_score(model, tokenizer, rows, texts, rewards, cfg, group=r.group_size,
                                         greedy=False, temperature=r.temperature, top_p=r.top_p)
    return summarize_preflight(scores.total.view(len(rows), r.group_size), scores.per_function, scores.names,
                               rollout.lengths, rollout.ended_with_eos, cfg,
                               answer_warning=answer_format_warning(pool, cfg))


def summarize_preflight(total: torch.Tensor, per_function: torch.Tensor, names: list[str],
                        lengths: torch.Tensor, ended: torch.Tensor, cfg: Config,
                        answer_warning: str | None = None) -> dict[str, Any]:
    """Learnable fraction, success rate, reward spread and truncation of [P, G] sampled groups
    (`answer_warning`: the gold answers do not suit the reward, which then explains a low fraction)."""
    valid = total[~torch.isnan(total)]
    hits = torch.nan_to_num(total, nan=-math.inf) >= success_threshold(cfg.algorithm.success_threshold)
    result: dict[str, Any] = {
        "prompts": total.shape[0], "group_size": total.shape[1],
        "learnable_fraction": learnable_fraction(total),
        "success_rate": float(hits.float().mean()),
        "all_correct_groups": int(hits.all(dim=1).sum()), "all_wrong_groups": int((~hits).all(dim=1).sum()),
        "reward/mean": float(valid.mean()) if valid.numel() else math.nan,
        "reward/std": float(valid.std()) if valid.numel() > 1 else 0.0,
        "reward/min": float(valid.min()) if valid.numel() else math.nan,
        "reward/max": float(valid.max()) if valid.numel() else math.nan,
        "reward_values": dict(sorted(Counter(round(v, 3) for v in valid.tolist()).items())),
        "truncated_fraction": float((~ended).float().mean()),
        "completion_len/mean": float(lengths.float().mean()),
    }
    for j, name in enumerate(names):
        column = per_function[:, j][~torch.isnan(per_function[:, j])]
        result[f"reward/{name}/mean"] = float(column.mean()) if column.numel() else math.nan
    if answer_warning:
        result["answer_warning"] = answer_warning
    result["verdict"] = verdict(result, cfg)
    return result


def verdict(result: dict[str, Any], cfg: Config) -> str:
    """One line: go, or the likely reason groups will not differ and what to change."""
    if result["learnable_fraction"] >= cfg.log.learnable_warn_below:
        return f"ok: about {100 * result['learnable_fraction']:.0f}% of groups should carry a learning signal"
    cause = result.get("answer_warning") or learnability_warning(result, cfg).split(": ", 1)[-1]
    return f"expected learnable fraction {result['learnable_fraction']:.2f} is low: {cause}"


def preflight_table(result: dict[str, Any]) -> Table:
    title = f"preflight: {result['prompts']} prompts x {result['group_size']} samples, base model"
    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in result.items():
        if key in ("verdict", "prompts", "group_size", "answer_warning"):
            continue
        shown = ", ".join(f"{k}: {n}" for k, n in value.items()) if isinstance(value, dict) else (
            f"{value:.3f}" if isinstance(value, float) else str(value))
        table.add_row(key, shown)
    return table


def print_preflight(result: dict[str, Any], console: Console | None = None) -> None:
    console = console or Console()
    console.print(preflight_table(result))
    if result.get("answer_warning") and result["answer_warning"] not in result["verdict"]:
        console.print(f"warning: {escape(result['answer_warning'])}")
    console.print(escape(result["verdict"]))
