"""What `groupwise train` checks before a run folder, a model or a worker process exists.

Each failure is one GroupwiseError line: the config's local paths (with the rule that resolved them), the
reward functions (their files import, their params bind), the training and held-out rows, the columns the
rewards need, and that `rollout.prompts_per_step` divides over the processes. With `--nproc N` the parent runs
it before starting any worker, so a mistake never reaches torchrun.
"""

from __future__ import annotations

from typing import Any

from groupwise.config.paths import check_local_paths
from groupwise.config.schema import Config
from groupwise.data.source import load_rows
from groupwise.rewards.columns import check_reward_columns
from groupwise.rewards.compute import RewardFunction, configured_rewards
from groupwise.runtime.distributed import check_divisible

Row = dict[str, Any]


def reads_heldout(cfg: Config) -> bool:
    """Whether a run reads held-out rows: it evaluates, or names a held-out file of its own."""
    return cfg.eval.before_after or cfg.eval.every > 0 or bool(cfg.data.heldout_path)


def check_before_start(cfg: Config, processes: int | None = None) -> list[RewardFunction]:
    """Everything a run can get wrong before its first step, checked in this process (`processes`: the world
    size the run will have; default: this one's). Returns the reward functions, built once (a run in this
    process scores with them)."""
    check_local_paths(cfg)
    check_divisible(cfg.rollout.prompts_per_step, processes)
    rewards = configured_rewards(cfg)
    check_reward_columns(rewards, load_rows(cfg.data, "train"), "training data")
    if reads_heldout(cfg):
        check_reward_columns(rewards, load_rows(cfg.data, "heldout"), "held-out data")
    return rewards
