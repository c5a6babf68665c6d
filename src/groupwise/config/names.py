"""Helpful unknown-key errors: "did you mean" for near misses, and TRL's GRPOConfig names mapped to ours."""

from __future__ import annotations

import difflib
from typing import Any

# GRPOConfig field -> the groupwise key (or what to use instead); docs/from-trl.md has the same table
TRL_NAMES = {
    "num_generations": "rollout.group_size",
    "max_completion_length": "rollout.max_new_tokens",
    "temperature": "rollout.temperature",
    "top_p": "rollout.top_p",
    "per_device_train_batch_size": "rollout.prompts_per_step",
    "learning_rate": "train.learning_rate",
    "weight_decay": "train.weight_decay",
    "max_grad_norm": "train.max_grad_norm",
    "warmup_steps": "train.warmup_steps",
    "lr_scheduler_type": "train.schedule",
    "max_steps": "train.steps",
    "seed": "train.seed",
    "bf16": "train.bf16",
    "save_steps": "train.save_every",
    "save_total_limit": "train.keep_checkpoints",
    "beta": "algorithm.beta",
    "epsilon": "algorithm.eps_low",
    "epsilon_high": "algorithm.eps_high",
    "delta": "algorithm.dual_clip",
    "loss_type": "algorithm.agg",
    "scale_rewards": "algorithm.scale",
    "num_iterations": "algorithm.num_iterations",
    "steps_per_generation": "algorithm.mini_batches",
    "mask_truncated_completions": "algorithm.overlong_filter",
    "gradient_checkpointing": "model.gradient_checkpointing",
    "model_name_or_path": "model.name",
    "report_to": "log.report_to",
}
# TRL values that are spelled differently here
TRL_VALUES = {"loss_type": {"grpo": "seq-mean-token-mean", "dr_grpo": "seq-mean-token-sum-norm",
                            "dapo": "token-mean", "bnpo": "token-mean"}}


def suggestion(key: str, keys: list[str]) -> str | None:
    """The key meant by an unknown `key` (dotted), among the schema's `keys`: TRL's name, the same key in another
    section, or a near miss."""
    name = key.rsplit(".", 1)[-1]
    if name in TRL_NAMES:
        return TRL_NAMES[name]
    if "." not in key:
        sections = sorted({k.split(".")[0] for k in keys})
        close = difflib.get_close_matches(key, sections, n=1, cutoff=0.75)
        if close:
            return close[0]
    same = [k for k in keys if k.rsplit(".", 1)[-1] == name]
    if len(same) == 1:
        return same[0]
    close = difflib.get_close_matches(key, keys, n=1, cutoff=0.8)
    if close:
        return close[0]
    short = difflib.get_close_matches(name, [k.rsplit(".", 1)[-1] for k in keys], n=1, cutoff=0.8)
    return next((k for k in keys if short and k.endswith(f".{short[0]}")), None)


def hint(key: str, keys: list[str]) -> str:
    """'; did you mean `train.steps`?' (or the TRL mapping) for an unknown key, else ''."""
    meant = suggestion(key, keys)
    if meant is None:
        return ""
    name = key.rsplit(".", 1)[-1]
    if name in TRL_NAMES and meant.rsplit(".", 1)[-1] != name:
        return f"; TRL's `{name}` is `{meant}` in groupwise"
    return f"; did you mean `{meant}`?"


def override_fix(key: str, value: Any, keys: list[str]) -> str | None:
    """`write --set rollout.group_size=8` for a TRL name or near miss given with --set; None when unknown."""
    meant = suggestion(key, keys)
    if meant is None:
        return None
    name = key.rsplit(".", 1)[-1]
    value = TRL_VALUES.get(name, {}).get(value, value)
    return f"write --set {meant}={value}"
