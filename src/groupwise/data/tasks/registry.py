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
_BUILTIN_MODULES = ("arithmetic", "countdown", "code_functions")


def register_task(name: str) -> Callable[[TaskBuilder], TaskBuilder]:
    """Register ``build(split: 'train' | 'heldout', size: int | None, seed: int, **params) -> rows``."""

    def wrap(builder: TaskBuilder) -> TaskBuilder:
        _TASKS[name] = builder
        return builder

    return wrap


def _load_builtins() -> None:
    for module in _BUILTIN_MODULES:
        try:
            importlib.import_module(f"groupwise.data.tasks.{module}")
        except ModuleNotFoundError as err:
            if err.name != f"groupwise.data.tasks.{module}":
                raise


def available_tasks() -> list[str]:
    _load_builtins()
    return sorted(_TASKS)


def build_task(name: str, split: str, size: int | None, seed: int, **params: Any) -> Rows:
    _load_builtins()
    if name not in _TASKS:
        raise GroupwiseError(f"unknown task '{name}'", f"use one of {', '.join(sorted(_TASKS))}, or a data file")
    try:
        return _TASKS[name](split=split, size=size, seed=seed, **params)
    except TypeError as err:
        raise GroupwiseError(f"task '{name}' got bad params {params}: {err}",
                             "check data.task_params against the task's parameters") from err
