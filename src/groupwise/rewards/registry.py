"""Reward functions by name: built-ins register themselves; users refer to `module:function` or `file.py:function`.

A reward function has TRL's signature: ``fn(prompts, completions, completion_ids=None, **columns)``
returning one ``float | None`` per completion (None: this function does not score that sample).
It may be a plain function or ``async``. A *factory* registered here takes the config's ``params`` and
returns such a function, so built-ins can be parameterised (e.g. ``format_regex(pattern=...)``).
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable
from pathlib import Path
from typing import Any

from groupwise.errors import GroupwiseError
from groupwise.rewards.columns import required_columns

RewardFn = Callable[..., Any]
FACTORIES: dict[str, Callable[..., RewardFn]] = {}  # name -> factory; filled as the reward modules import


def register_reward(name: str) -> Callable[[Callable[..., RewardFn]], Callable[..., RewardFn]]:
    """Register a factory ``make(**params) -> reward_fn`` under ``name``."""

    def wrap(factory: Callable[..., RewardFn]) -> Callable[..., RewardFn]:
        FACTORIES[name] = factory
        return factory

    return wrap


def load_reference(ref: str, what: str = "reward", kind: str = "function") -> RewardFn:
    """The object `file.py:NAME` or `module:NAME` names (a reward function; `what`/`kind` word the errors)."""
    target, _, attr = ref.rpartition(":")
    if target.endswith(".py"):
        path = Path(target)
        if not path.is_file():
            raise GroupwiseError(f"{what} file '{target}' does not exist", f"give an existing path as file.py:{kind}")
        spec = importlib.util.spec_from_file_location(f"groupwise_user_{what}_{path.stem}", path)
        module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
        try:
            spec.loader.exec_module(module)  # type: ignore[union-attr]
        except Exception as err:  # noqa: BLE001 - user code: report, don't crash
            raise GroupwiseError(f"{what} file '{target}' failed to import: {err}",
                                 "fix the error in that file") from err
    else:
        try:
            module = importlib.import_module(target)
        except ImportError as err:
            raise GroupwiseError(f"{what} module '{target}' cannot be imported ({err})",
                                 "check the module name and that it is on PYTHONPATH") from err
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise GroupwiseError(f"'{attr}' is not a {kind} in '{target}'", f"name a {kind} as module:{kind}")
    return fn


def bind_params(fn: RewardFn, params: dict[str, Any]) -> RewardFn:
    def bound(prompts, completions, completion_ids=None, **columns):
        return fn(prompts, completions, completion_ids=completion_ids, **{**columns, **params})

    bound.__name__ = getattr(fn, "__name__", "reward")
    bound.required_columns = [c for c in required_columns(fn) if c not in params]  # type: ignore[attr-defined]
    return bound
