"""The tasks a config can name (`data.task`): the built-in modules' registrations."""

from __future__ import annotations

from typing import Any

from groupwise.data.tasks import arithmetic, code_functions, countdown  # noqa: F401 - for their registrations
from groupwise.data.tasks.registry import TASK_REWARDS, TASKS, Rows
from groupwise.errors import GroupwiseError


def available_tasks() -> list[str]:
    return sorted(TASKS)


def task_rewards(name: str) -> list[dict[str, Any]]:
    """The default reward functions of a built-in task (config entries: name, weight, params)."""
    return TASK_REWARDS.get(name, [])


def build_task(name: str, split: str, size: int | None, seed: int, **params: Any) -> Rows:
    if name not in TASKS:
        raise GroupwiseError(f"unknown task '{name}'", f"use one of {', '.join(sorted(TASKS))}, or a data file")
    try:
        return TASKS[name](split=split, size=size, seed=seed, **params)
    except TypeError as err:
        raise GroupwiseError(f"task '{name}' got bad params {params}: {err}",
                             "check data.task_params against the task's parameters") from err
