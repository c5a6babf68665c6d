"""What `groupwise eval` runs: load the model (and a baseline), pick the problems, evaluate, write OUT."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from groupwise.config.schema import Config
from groupwise.data.source import load_rows
from groupwise.errors import GroupwiseError
from groupwise.evaluate.data_spec import base_config, data_overrides
from groupwise.evaluate.passk_eval import check_meta, evaluate_passk, unique_rows, usable_ks
from groupwise.evaluate.run import load_for_eval
from groupwise.evaluate.sampling import prompt_key, success_threshold
from groupwise.rewards.compute import RewardFunction, configured_rewards
from groupwise.train.distributed import is_main, run_on_main


def run_eval(model: str, config: Path | None, overrides: list[str], *, problems: int | None = None,
             data: str | None = None, samples: int | None = None, ks: list[int] | None = None,
             baseline: str | None = None, out: Path | None = None, console=None,
             preloaded: tuple[Any, Any] | None = None, rewards: list[RewardFunction] | None = None
             ) -> dict[str, Any]:
    """Evaluate `model` (and `baseline` on the same problems, rewards and prompts); returns both summaries.

    From Python (groupwise.evaluate): `preloaded` is the (model, tokenizer) that `model` names, `rewards`
    replace the config's reward functions.
    """
    trained_on = base_config(model, config, overrides)
    overrides = overrides + data_overrides(data, trained_on, "heldout")
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
    from groupwise.train.loop import render_all
    from groupwise.train.progress import count_progress

    if out:
        r = cfg.rollout
        meta = {"model": name, "samples": samples, "threshold": success_threshold(cfg),
                "max_new_tokens": r.max_new_tokens, "temperature": r.temperature}
        run_on_main(lambda: check_meta(out, meta))  # under torchrun rank 0 alone writes OUT
    rewards = rewards if rewards is not None else configured_rewards(cfg)
    with count_progress(len(rows), label, enabled=cfg.log.progress and is_main(), console=console) as advance:
        summary = evaluate_passk(model, tokenizer, rows, render_all(rows, tokenizer, cfg), rewards, cfg,
                                 samples=samples, ks=ks, out_dir=out, progress=advance)
    summary = extra | summary | {"threshold": success_threshold(cfg)}
    if out and is_main():
        (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary
