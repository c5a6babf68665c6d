"""Reward functions by name: built-ins register themselves; users refer to `module:function` or `file.py:function`.

A reward function has TRL's signature: ``fn(prompts, completions, completion_ids=None, **columns)``
returning one ``float | None`` per completion (None: this function does not score that sample).
It may be a plain function or ``async``. A *factory* registered here takes the config's ``params`` and
returns such a function, so built-ins can be parameterised (e.g. ``format_regex(pattern=...)``).
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

from groupwise.errors import GroupwiseError

RewardFn = Callable[..., Any]
_FACTORIES: dict[str, Callable[..., RewardFn]] = {}


def register_reward(name: str) -> Callable[[Callable[..., RewardFn]], Callable[..., RewardFn]]:
    """Register a factory ``make(**params) -> reward_fn`` under ``name``."""

    def wrap(factory: Callable[..., RewardFn]) -> Callable[..., RewardFn]:
        _FACTORIES[name] = factory
        return factory

    return wrap


def available_rewards() -> list[str]:
    _load_builtins()
    return sorted(_FACTORIES)


def _load_builtins() -> None:
    importlib.import_module("groupwise.rewards.builtin")


def _load_reference(ref: str) -> RewardFn:
    target, _, attr = ref.rpartition(":")
    if target.endswith(".py"):
        path = Path(target)
        if not path.is_file():
            raise GroupwiseError(f"reward file '{target}' does not exist", "give an existing path as file.py:function")
        spec = importlib.util.spec_from_file_location(f"groupwise_user_reward_{path.stem}", path)
        module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
        try:
            spec.loader.exec_module(module)  # type: ignore[union-attr]
        except Exception as err:  # noqa: BLE001 - user code: report, don't crash
            raise GroupwiseError(f"reward file '{target}' failed to import: {err}",
                                 "fix the error in that file") from err
    else:
        try:
            module = importlib.import_module(target)
        except ImportError as err:
            raise GroupwiseError(f"reward module '{target}' cannot be imported ({err})",
                                 "check the module name and that it is on PYTHONPATH") from err
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise GroupwiseError(f"'{attr}' is not a function in '{target}'", "name a callable as module:function")
    return fn


def resolve_reward(name: str, params: dict[str, Any] | None = None) -> RewardFn:
    """A callable reward function for a config entry: a registered built-in, or a user reference."""
    params = params or {}
    if ":" in name:
        fn = _load_reference(name)
        return _bind(fn, params) if params else fn
    _load_builtins()
    if name not in _FACTORIES:
        raise GroupwiseError(f"unknown reward '{name}'",
                             f"use one of {', '.join(sorted(_FACTORIES))} or module:function / file.py:function")
    factory = _FACTORIES[name]
    try:
        inspect.signature(factory).bind(**params)
    except TypeError as err:
        raise GroupwiseError(f"reward '{name}' got bad params {params}: {err}",
                             f"see the parameters of '{name}' in the docs") from err
    return factory(**params)


def _bind(fn: RewardFn, params: dict[str, Any]) -> RewardFn:
    def bound(prompts, completions, completion_ids=None, **columns):
        return fn(prompts, completions, completion_ids=completion_ids, **{**columns, **params})

    bound.__name__ = getattr(fn, "__name__", "reward")
    return bound
