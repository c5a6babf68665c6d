"""Online difficulty filter: skip prompts whose last `visits` groups were all-correct, or all all-wrong.

It wraps the training prompt stream (`prompts(n) -> (rows, texts)`) and learns from each step's
per-group rewards, so prompts that are already solved (or hopeless) stop using rollout budget.
Its whole state is `state_dict()`, for checkpoints.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from torch import Tensor

from groupwise.algorithms import success_threshold
from groupwise.data.prompts import prompt_key
from groupwise.errors import GroupwiseError

Rows = list[dict[str, Any]]
Stream = Callable[[int], tuple[Rows, list[str]]]
SOLVED, FAILED, MIXED = "solved", "failed", "mixed"


def row_key(row: dict[str, Any]) -> str:
    """A stable key for a training row (its prompt and answer)."""
    return prompt_key(row, row.get("answer"))


def group_outcome(rewards: list[float], threshold: float) -> str:
    """'solved' when every scored sample reaches the threshold, 'failed' when none does, else 'mixed'."""
    scored = [r for r in rewards if not math.isnan(r)]
    hits = sum(r >= threshold for r in scored)
    if not scored:
        return MIXED
    return SOLVED if hits == len(scored) else FAILED if hits == 0 else MIXED


def _settled(outcomes: list[str], visits: int) -> bool:
    last = outcomes[-visits:]
    return len(last) == visits and last[0] != MIXED and all(o == last[0] for o in last)


class DifficultyFilter:
    """A prompt stream that skips prompts whose last `visits` outcomes were all 'solved' or all 'failed'."""

    def __init__(self, stream: Stream, visits: int, threshold: float = 1.0) -> None:
        self.stream, self.visits, self.threshold = stream, visits, threshold
        self.history: dict[str, list[str]] = {}
        self.skipped = 0  # since the last `after_step`
        self.skipped_total = 0

    @classmethod
    def from_config(cls, stream: Stream, spec: dict[str, Any], threshold: float | None) -> DifficultyFilter:
        """From data.difficulty_filter ({visits: M}) and algorithm.success_threshold."""
        unknown = sorted(set(spec) - {"visits"})
        visits = spec.get("visits", 2)
        if unknown or not isinstance(visits, int) or isinstance(visits, bool) or visits < 1:
            raise GroupwiseError(f"data.difficulty_filter {spec} is not of the form {{visits: M}}, M >= 1",
                                 "write e.g. data.difficulty_filter: {visits: 2}")
        return cls(stream, visits, success_threshold(threshold))

    def is_settled(self, row: dict[str, Any]) -> bool:
        """Whether the row's last `visits` groups were all solved or all failed."""
        return _settled(self.history.get(row_key(row), []), self.visits)

    def __call__(self, n: int) -> tuple[Rows, list[str]]:
        """The next n unsettled prompts; stops skipping after one pass over every known prompt."""
        rows: Rows = []
        texts: list[str] = []
        skipped_here = 0
        while len(rows) < n:
            (row,), (text,) = self.stream(1)
            if self.is_settled(row) and skipped_here < len(self.history) + n:
                skipped_here += 1
                continue
            rows.append(row)
            texts.append(text)
        self.skipped += skipped_here
        self.skipped_total += skipped_here
        return rows, texts

    def update(self, rows: Rows, rewards: Tensor) -> None:
        """Record each group's outcome; rewards: [P, G] total rewards (NaN: not scored)."""
        for row, group in zip(rows, rewards.tolist(), strict=True):
            outcomes = self.history.setdefault(row_key(row), [])
            outcomes.append(group_outcome(group, self.threshold))
            del outcomes[:-self.visits]

    def after_step(self, rows: Rows, rewards: Tensor) -> dict[str, float]:
        """Update from the step's batch; its metrics: prompts skipped this step, prompts settled."""
        self.update(rows, rewards)
        settled = sum(_settled(h, self.visits) for h in self.history.values())
        metrics = {"difficulty/skipped": float(self.skipped), "difficulty/settled": float(settled)}
        self.skipped = 0
        return metrics

    def state_dict(self) -> dict[str, Any]:
        return {"visits": self.visits, "threshold": self.threshold, "skipped_total": self.skipped_total,
                "history": {k: list(v) for k, v in self.history.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.history = {k: list(v)[-self.visits:] for k, v in state.get("history", {}).items()}
        self.skipped_total = int(state.get("skipped_total", 0))


def wrap_with_difficulty_filter(stream: Stream, spec: dict[str, Any] | None, threshold: float | None
                                ) -> Stream | DifficultyFilter:
    """The stream itself when no filter is configured."""
    return stream if not spec else DifficultyFilter.from_config(stream, spec, threshold)
