"""`groupwise eval`: evaluate a base model or a run folder on the held-out split."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from groupwise.config.load import build_config
from groupwise.data.source import load_rows
from groupwise.evaluate.accuracy import evaluate_rows
from groupwise.models.load import load_configured_model, resolve_device
from groupwise.models.trained import is_run_dir, load_trained
from groupwise.rewards.compute import configured_rewards


def load_for_eval(model: str, config: Path | None, overrides: list[str]):
    if is_run_dir(model):
        return load_trained(model, overrides)
    cfg = build_config(config, overrides + [f"model.name={model}"])
    loaded, tokenizer = load_configured_model(cfg)
    return loaded.eval(), tokenizer, cfg


def evaluate_model(model: str, config: Path | None, overrides: list[str], problems: int | None,
                   console=None) -> dict[str, Any]:
    from groupwise.train.loop import render_all
    from groupwise.train.progress import count_progress

    loaded, tokenizer, cfg = load_for_eval(model, config, overrides)
    loaded.to(resolve_device(cfg.model.device))
    rows = load_rows(cfg.data, "heldout")[: problems or cfg.eval.num_problems]
    rewards = configured_rewards(cfg)
    with count_progress(len(rows), "eval", enabled=cfg.log.progress, console=console) as advance:
        result = evaluate_rows(loaded, tokenizer, rows, render_all(rows, tokenizer, cfg), rewards, cfg,
                               progress=advance)
    return {"model": model} | result
