"""What `groupwise eval` and `groupwise select` run (from the CLI and from Python alike): load the model, pick
the rows, evaluate them or estimate their pass rates, write the results."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from groupwise.algorithms import success_threshold
from groupwise.config.load import build_config
from groupwise.config.paths import check_local_paths
from groupwise.config.schema import Config
from groupwise.data.prompts import prompt_key, render_prompts
from groupwise.data.source import load_rows
from groupwise.errors import GroupwiseError
from groupwise.evaluate.data_option import base_config, data_overrides, is_data_file
from groupwise.evaluate.heldout_eval import check_meta, evaluate_passk, results_meta, unique_rows, usable_ks
from groupwise.evaluate.selection import (
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
from groupwise.models.trained import is_run_dir, load_trained
from groupwise.rewards.compute import RewardFunction, configured_rewards
from groupwise.runtime.distributed import is_main, run_on_main
from groupwise.runtime.progress import count_progress


def run_eval(model: str, config: Path | None, overrides: list[str], *, problems: int | None = None,
             data: str | None = None, samples: int | None = None, ks: list[int] | None = None,
             baseline: str | None = None, out: Path | None = None, console=None,
             preloaded: tuple[Any, Any] | None = None, rewards: list[RewardFunction] | None = None
             ) -> dict[str, Any]:
    """Evaluate `model` (and `baseline` on the same problems, rewards and prompts); returns both summaries.

    From Python (groupwise.evaluate): `preloaded` is the (model, tokenizer) that `model` names, `rewards`
    replace the config's reward functions.
    """
    trained_on, overrides = eval_overrides(model, config, overrides, data)
    if preloaded is not None:
        (loaded, tokenizer), cfg = preloaded, base_config(model, config, overrides)
    else:
        loaded, tokenizer, cfg = load_for_eval(model, config, overrides)
    samples = cfg.eval.samples if samples is None else samples
    ks = usable_ks(ks or [1], samples)
    rows = unique_rows(load_rows(cfg.data, "heldout"))[: problems or cfg.eval.num_problems]
    seen = {"in_training_data": in_training_data(rows, trained_on)} if data else {}
    result = {"model": model, "summary": _evaluate_one(model, loaded, tokenizer, rows, cfg, samples, ks, out,
                                                       "eval", console, seen, rewards)}
    if baseline:
        other, other_tokenizer, _ = load_for_eval(baseline, config, overrides)
        result |= {"baseline": baseline,
                   "baseline_summary": _evaluate_one(baseline, other, other_tokenizer, rows, cfg, samples, ks,
                                                     out / "baseline" if out else None, "baseline", console,
                                                     seen, rewards)}
    if out and is_main():
        (out / "comparison.json").write_text(json.dumps(result, indent=2))
    return result


def eval_overrides(model: str, config: Path | None, overrides: list[str], data: str | None
                   ) -> tuple[Config, list[str]]:
    """The config `model` was trained on (or --config's), and the overrides that point evaluation at `--data`;
    every local path checked (`eval --nproc` calls it before any worker starts)."""
    trained_on = base_config(model, config, overrides)
    overrides = overrides + data_overrides(data, trained_on, "heldout")
    check_local_paths(base_config(model, config, overrides))
    return trained_on, overrides


def in_training_data(rows: list[dict[str, Any]], trained_on: Config) -> int | None:
    """How many of `rows` have a prompt of the training data of `trained_on` (None: it cannot be read)."""
    try:
        training = {prompt_key(row) for row in load_rows(trained_on.data, "train")}
    except GroupwiseError:
        return None
    return sum(prompt_key(row) in training for row in rows)


def _evaluate_one(name: str, model, tokenizer, rows, cfg: Config, samples: int, ks: list[int],
                  out: Path | None, label: str, console, extra: dict[str, Any],
                  rewards: list[RewardFunction] | None = None) -> dict[str, Any]:
    if out:
        meta = results_meta(name, samples, cfg)
        run_on_main(lambda: check_meta(out, meta))  # under torchrun rank 0 alone writes OUT
    rewards = rewards if rewards is not None else configured_rewards(cfg)
    with count_progress(len(rows), label, enabled=cfg.log.progress and is_main(), console=console) as advance:
        summary = evaluate_passk(model, tokenizer, rows, render_prompts(rows, tokenizer, cfg.data), rewards, cfg,
                                 samples=samples, ks=ks, out_dir=out, progress=advance)
    summary = extra | summary | {"threshold": success_threshold(cfg.algorithm.success_threshold)}
    if out and is_main():
        (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def load_for_eval(model: str, config: Path | None, overrides: list[str]):
    """(model, tokenizer, config) of what `groupwise eval` evaluates: a run folder (its trained weights and
    config) or a model by name."""
    if is_run_dir(model):
        return load_trained(model, overrides)
    cfg = build_config(config, overrides + [f"model.name={model}"])
    loaded, tokenizer = load_configured_model(cfg)
    return loaded.eval(), tokenizer, cfg


def default_difficulty_path(out: Path, data: str | None, task: str | None) -> Path:
    """Beside the output, named after the data, so every strategy's run over the same data shares it."""
    name = Path(data).stem if data and is_data_file(data) else (data or task or "data")
    return out.parent / f"{name}.difficulty.jsonl"


def run_select(data: str | None, keep: str, out: Path, *, samples: int = 8, model: str | None = None,
               config: Path | None = None, overrides: list[str] | None = None, difficulty: Path | None = None,
               seed: int = 0, console=None) -> dict[str, Any]:
    """Estimate (or read) pass rates, write the kept rows with `pass_rate`, return what to print."""
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
        return loaded, tokenizer, lambda chunk: render_prompts(chunk, tokenizer, cfg.data)

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
