"""Built-in tasks by name. A task builder returns rows (dicts) for a split; users add their own the same way.

Every row has ``prompt`` (the user message, str) and whatever its rewards need: ``answer`` for
answer-checking rewards, ``tests`` for code rewards; an optional ``system`` message. Every other key
reaches the reward functions as a column.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from groupwise.errors import GroupwiseError

Rows = list[dict[str, Any]]
TaskBuilder = Callable[..., Rows]
_TASKS: dict[str, TaskBuilder] = {}
_TASK_REWARDS: dict[str, list[dict[str, Any]]] = {}
_BUILTIN_MODULES = ("arithmetic", "countdown", "code_functions")


def register_task(name: str, rewards: list[dict[str, Any]] | None = None
                  ) -> Callable[[TaskBuilder], TaskBuilder]:
    """Register ``build(split: 'train' | 'heldout', size: int | None, seed: int, **params) -> rows``.

    `rewards`: the reward functions (config entries) used when the config names none.
    """

    def wrap(builder: TaskBuilder) -> TaskBuilder:
        _TASKS[name] = builder
        _TASK_REWARDS[name] = rewards or []
        return builder

    return wrap


def _load_builtins() -> None:
    for module in _BUILTIN_MODULES:
        importlib.import_module(f"groupwise.data.tasks.{module}")


def available_tasks() -> list[str]:
    _load_builtins()
    return sorted(_TASKS)


def task_rewards(name: str) -> list[dict[str, Any]]:
    """The default reward functions of a built-in task (config entries: name, weight, params)."""
    _load_builtins()
    return _TASK_REWARDS.get(name, [])


def build_task(name: str, split: str, size: int | None, seed: int, **params: Any) -> Rows:
    _load_builtins()
    if name not in _TASKS:
        raise GroupwiseError(f"unknown task '{name}'", f"use one of {', '.join(sorted(_TASKS))}, or a data file")
    try:
        return _TASKS[name](split=split, size=size, seed=seed, **params)
    except TypeError as err:
        raise GroupwiseError(f"task '{name}' got bad params {params}: {err}",
                             "check data.task_params against the task's parameters") from err
