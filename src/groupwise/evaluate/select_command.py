"""What `groupwise select` runs: pool rows, cached or fresh pass rates, the kept slice and its report."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from groupwise.config.load import build_config
from groupwise.data.source import load_rows
from groupwise.evaluate.data_spec import data_overrides, is_data_file
from groupwise.evaluate.select import (
    estimate_pass_rates,
    histogram,
    learnable_share,
    missing_rows,
    parse_strategy,
    read_difficulty,
    select_indices,
    write_selection,
)
from groupwise.models.load import load_configured_model
from groupwise.rewards.compute import configured_rewards


def default_difficulty_path(out: Path, data: str | None, task: str | None) -> Path:
    """Beside the output, named after the data, so every strategy's run over the same data shares it."""
    name = Path(data).stem if data and is_data_file(data) else (data or task or "data")
    return out.parent / f"{name}.difficulty.jsonl"


def run_select(data: str | None, keep: str, out: Path, *, samples: int = 8, model: str | None = None,
               config: Path | None = None, overrides: list[str] | None = None, difficulty: Path | None = None,
               seed: int = 0, console=None) -> dict[str, Any]:
    """Estimate (or read) pass rates, write the kept rows with `pass_rate`, return what to print."""
    from groupwise.train.loop import render_all
    from groupwise.train.progress import count_progress

    strategy = parse_strategy(keep)
    overrides = list(overrides or [])
    start = build_config(config, overrides)
    overrides += data_overrides(data, start, "train")
    overrides += [f"model.name={json.dumps(model)}"] if model else []
    cfg = build_config(config, overrides)
    rows = load_rows(cfg.data, "train")
    path = difficulty or default_difficulty_path(out, data, cfg.data.task)
    rewards = configured_rewards(cfg)
    todo = len(missing_rows(rows, read_difficulty(path), cfg.model.name, samples))

    def load_model():
        loaded, tokenizer = load_configured_model(cfg)
        loaded.eval()
        return loaded, tokenizer, lambda chunk: render_all(chunk, tokenizer, cfg)

    with count_progress(todo, "estimating pass rates", enabled=cfg.log.progress and todo > 0,
                        console=console) as advance:
        rates = estimate_pass_rates(load_model, rows, cfg, rewards, model_name=cfg.model.name,
                                    samples=samples, path=path, progress=advance)
    indices = select_indices(rates, strategy, seed)
    write_selection(out, rows, rates, indices)
    kept = [rates[i] for i in indices]
    return {"rows": len(rows), "kept": len(indices), "generated": todo, "difficulty_file": str(path),
            "out": str(out), "learnable_share": learnable_share(rates),
            "mean_pass_rate": sum(rates) / max(len(rates), 1),
            "kept_mean_pass_rate": sum(kept) / len(kept) if kept else None,
            "histogram": histogram(rates, bins=min(samples + 1, 10)), "strategy": keep}
