"""The rewards a config can name: the built-in modules' registrations, and `module:function` references."""

from __future__ import annotations

import inspect
from typing import Any

from groupwise.errors import GroupwiseError
from groupwise.rewards import basic, code, reward_model, text  # noqa: F401 - imported for their registrations
from groupwise.rewards.registry import FACTORIES, RewardFn, bind_params, load_reference


def available_rewards() -> list[str]:
    return sorted(FACTORIES)


def factory_parameters(name: str) -> set[str]:
    """The parameters a built-in reward's factory takes (empty for an unknown name)."""
    factory = FACTORIES.get(name)
    return set(inspect.signature(factory).parameters) if factory else set()


def resolve_reward(name: str, params: dict[str, Any] | None = None) -> RewardFn:
    """A callable reward function for a config entry: a registered built-in, or a user reference."""
    params = params or {}
    if ":" in name:
        fn = load_reference(name)
        return bind_params(fn, params) if params else fn
    if name not in FACTORIES:
        raise GroupwiseError(f"unknown reward '{name}'",
                             f"use one of {', '.join(sorted(FACTORIES))} or module:function / file.py:function")
    factory = FACTORIES[name]
    try:
        inspect.signature(factory).bind(**params)
    except TypeError as err:
        raise GroupwiseError(f"reward '{name}' got bad params {params}: {err}",
                             f"see the parameters of '{name}' in the docs") from err
    return factory(**params)
