"""Built-in tasks by name. A task builder returns rows (dicts) for a split; users add their own the same way.

Every row has ``prompt`` (the user message, str) and whatever its rewards need: ``answer`` for
answer-checking rewards, ``tests`` for code rewards; an optional ``system`` message. Every other key
reaches the reward functions as a column.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Rows = list[dict[str, Any]]
TaskBuilder = Callable[..., Rows]
TASKS: dict[str, TaskBuilder] = {}  # name -> builder; filled as the task modules import
TASK_REWARDS: dict[str, list[dict[str, Any]]] = {}


def register_task(name: str, rewards: list[dict[str, Any]] | None = None
                  ) -> Callable[[TaskBuilder], TaskBuilder]:
    """Register ``build(split: 'train' | 'heldout', size: int | None, seed: int, **params) -> rows``.

    `rewards`: the reward functions (config entries) used when the config names none.
    """

    def wrap(builder: TaskBuilder) -> TaskBuilder:
        TASKS[name] = builder
        TASK_REWARDS[name] = rewards or []
        return builder

    return wrap
