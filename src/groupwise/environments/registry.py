"""Environments by name: the built-ins, ones you register, and your class by `file.py:Class` / `module:Class`.

`configured_environment(cfg)` is what a sampler runs: a factory making one instance per episode (built-ins get
the `sandbox` section when their constructor takes it), the limits, and how data rows become first messages.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any

from groupwise.config.schema import Config, EnvironmentConfig
from groupwise.environments.code_feedback import CodeFeedback
from groupwise.environments.python_tool import PythonTool
from groupwise.errors import GroupwiseError
from groupwise.rewards.registry import load_reference
from groupwise.rollout.episodes.runner import EnvironmentSpec
from groupwise.rollout.episodes.styles import Guard

ENVIRONMENTS: dict[str, type] = {"python_tool": PythonTool, "code_feedback": CodeFeedback}
GIVEN: dict[str, type] = {}  # classes handed to groupwise.train(environment=...), by the reference config.yaml holds


def register_environment(name: str, environment: type) -> None:
    """Make `environment.name: name` run `environment` (a class with `reset`, and `step` or tool methods)."""
    ENVIRONMENTS[name] = environment


def give_environment(reference: str, environment: type) -> None:
    """Make `environment.path: reference` find a class handed over from Python, even one no import can reach."""
    GIVEN[reference] = environment


def environment_class(section: EnvironmentConfig) -> type:
    """The class `environment.name` or `environment.path` names."""
    if section.name is not None:
        if section.name not in ENVIRONMENTS:
            raise GroupwiseError(f"unknown environment '{section.name}'",
                                 f"use one of {', '.join(sorted(ENVIRONMENTS))}, or environment.path: file.py:Class")
        return ENVIRONMENTS[section.name]
    found = GIVEN.get(section.path) or load_reference(section.path, what="environment", kind="class")
    if not inspect.isclass(found) or not callable(getattr(found, "reset", None)):
        raise GroupwiseError(f"environment.path {section.path} is not a class with a reset method",
                             "name a class with reset(self, **row), and step(self, completion) or tool methods")
    return found


def configured_environment(cfg: Config) -> EnvironmentSpec | None:
    """How the run's sampler runs episodes; None without an environment."""
    section = cfg.environment
    if not section.enabled:
        return None
    if not cfg.data.chat_template:
        raise GroupwiseError("an environment's turns are rendered with the chat template, and data.chat_template "
                             "is false", "set data.chat_template: true")
    cls = environment_class(section)
    params: dict[str, Any] = dict(section.params)
    accepted = inspect.signature(cls).parameters
    if "sandbox" in accepted and "sandbox" not in params:
        params["sandbox"] = cfg.sandbox.model_dump()
    try:
        inspect.signature(cls).bind(**params)
    except TypeError as err:
        raise GroupwiseError(f"environment {cls.__name__} got bad params {section.params}: {err}",
                             f"give environment.params that {cls.__name__}(...) takes") from err
    return EnvironmentSpec(functools.partial(cls, **params), section.max_turns, cfg.rollout.max_episode_tokens,
                           step_style=callable(getattr(cls, "step", None)), template=cfg.data.prompt_template,
                           system_prompt=cfg.data.system_prompt, guard=Guard(cfg.rewards.on_error))
