"""Run outputs written as the run goes: metrics.jsonl (+ TensorBoard) and samples.jsonl."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from groupwise.runtime.jsonl import read_jsonl


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class MetricsLog:
    """One JSON object per step in metrics.jsonl; the same scalars in TensorBoard when asked."""

    def __init__(self, run_dir: Path, tensorboard: bool = False, trackers: list | None = None) -> None:
        self.path = run_dir / "metrics.jsonl"
        self.trackers = list(trackers or [])  # log.report_to's wandb / mlflow (train/trackers.py)
        self.writer = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(log_dir=str(run_dir / "tensorboard"))

    def write(self, step: int, metrics: dict[str, Any]) -> None:
        record = {"step": step} | {k: _clean(v) for k, v in metrics.items()}
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")
        if self.writer is not None:
            for key, value in metrics.items():
                if isinstance(value, int | float) and math.isfinite(value):
                    self.writer.add_scalar(key, value, step)
            self.writer.flush()
        if self.trackers:
            from groupwise.train.trackers import scalars

            for tracker in self.trackers:
                tracker.log(step, scalars(metrics))

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        for tracker in self.trackers:
            tracker.close()


def write_samples(path: Path, step: int, batch, groups: int, rendered: list[str] | None = None,
                  golds: list[dict[str, Any]] | None = None) -> None:
    """The first `groups` groups of a step: the prompt (and the text the model saw, `rendered`), the gold answer
    or tests (and `golds`: the gold as each reward read it), the completions, their total reward and each reward
    function's score. Episodes: each completion's whole conversation as `messages` (role, content), and the prompt
    its episode started from as `rendered_prompt`."""
    g, episodes = batch.rollout.group_size, batch.rollout.episodes
    with path.open("a") as f:
        for p in range(min(groups, len(batch.rows))):
            rows = range(p * g, (p + 1) * g)
            row = batch.rows[p]
            seen = episodes.prompts[p * g] if episodes is not None else (
                rendered[p] if rendered and p < len(rendered) else None)
            f.write(json.dumps({
                "step": step, "prompt": row["prompt"] if isinstance(row["prompt"], str) else row["prompt"][-1],
                **({"rendered_prompt": seen} if seen else {}),
                "answer": row.get("answer"), **({"gold": golds[p]} if golds and p < len(golds) and golds[p] else {}),
                **({"tests": row["tests"]} if "tests" in row else {}),
                "completions": [batch.rollout.completions[i] for i in rows],
                "rewards": [_clean(float(batch.scores.total[i])) for i in rows],
                "reward_per_function": {name: [_clean(float(batch.scores.per_function[i, j])) for i in rows]
                                        for j, name in enumerate(batch.scores.names)},
                "advantages": [round(float(a), 4) for a in batch.advantages[p]],
                "truncated": [not bool(batch.rollout.ended_with_eos[i]) for i in rows],
                **({"messages": [episodes.messages[i] for i in rows]} if episodes is not None else {}),
            }) + "\n")


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    return read_jsonl(Path(run_dir) / "metrics.jsonl")
