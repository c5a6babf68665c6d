"""The two ways to write an environment, turned into one reply per assistant turn.

Step style: `reset(**row)`, then `step(completion) -> (observation | None, reward | None, done)`; each observation
is the next user turn. Tool style (TRL's `environment_factory`): `reset(**row)`, and public methods with type hints
and docstrings are tools; the model's tool calls run them and their results come back as `tool` messages; a turn
without a tool call ends the episode. An environment that raises in reset/step is handled as `rewards.on_error`
says; one that returns the wrong type is a `GroupwiseError` naming the method and the type expected.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from groupwise.errors import GroupwiseError
from groupwise.rollout.episodes.tool_calls import parse_tool_calls, tool_methods, tool_schemas

log = logging.getLogger(__name__)
Message = dict[str, Any]
RESET_TYPE = "str, a list of {role, content} messages, or None"
STEP_TYPE = "(observation: str | list of messages | None, reward: float | None, done: bool)"


class EpisodeFailed(Exception):
    """The environment raised in reset or step under `rewards.on_error: zero`: the episode ends and scores 0."""


@dataclass
class Guard:
    """Calls an environment's reset/step as `on_error` says: raise one line, or warn once per method and fail
    the episode alone."""

    on_error: str = "raise"
    warned: set[str] = field(default_factory=set)

    def call(self, environment: Any, method: str, *args: Any, **kwargs: Any) -> Any:
        where = f"{type(environment).__name__}.{method}"
        try:
            return getattr(environment, method)(*args, **kwargs)
        except GroupwiseError:
            raise
        except Exception as err:  # noqa: BLE001 - user code: one line, or one failed episode
            what = f"environment {where} raised {type(err).__name__}: {err}"
            if self.on_error == "raise":
                raise GroupwiseError(what, "fix the environment, or set rewards.on_error: zero to score a "
                                     "failing episode 0 and go on") from err
            if where not in self.warned:
                self.warned.add(where)
                log.warning("%s; its episodes score 0 (rewards.on_error: zero; counted in env/failed)", what)
            raise EpisodeFailed(where) from err


@dataclass
class Reply:
    """What the environment answered to one assistant turn."""

    messages: list[Message]  # the next user/tool messages (none: the episode ends, or goes on without one)
    reward: float | None = None
    done: bool = False
    tool_calls: int = 0
    tool_errors: int = 0


def as_messages(value: Any, method: str, expected: str) -> list[Message] | None:
    """A reset/step result as messages: None, a string (one user message) or a list of {role, content}."""
    if value is None:
        return None
    if isinstance(value, str):
        return [{"role": "user", "content": value}]
    if isinstance(value, list) and all(isinstance(m, dict) and isinstance(m.get("role"), str)
                                       and isinstance(m.get("content"), str) for m in value):
        return [dict(m) for m in value]
    raise GroupwiseError(f"environment {method} returned {type(value).__name__}; expected {expected}",
                         f"make {method.rsplit('.', 1)[-1]} return {expected}")


def first_messages(reset_result: Any, row_messages: list[Message], where: str) -> list[Message]:
    """The conversation an episode starts from: the row's messages (reset returned None), the row's last message
    with reset's string added (TRL's rule; the string alone when that message is empty), or reset's messages."""
    if isinstance(reset_result, str):
        messages = [dict(m) for m in row_messages]
        last = messages[-1]
        last["content"] = f"{last['content']}{reset_result}" if last["content"] else reset_result
        return messages
    given = as_messages(reset_result, where, RESET_TYPE)
    return row_messages if given is None else given


class StepStyle:
    """`step(completion) -> (observation, reward, done)` after every assistant turn."""

    def __init__(self, environment: Any, guard: Guard) -> None:
        self.environment, self.guard = environment, guard
        self.schemas: list[dict[str, Any]] = []  # a step environment offers no tools

    def respond(self, completion: str) -> Reply:
        result = self.guard.call(self.environment, "step", completion)
        where = f"{type(self.environment).__name__}.step"
        if not (isinstance(result, tuple) and len(result) == 3):
            raise GroupwiseError(f"environment {where} returned {_type_name(result)}; expected {STEP_TYPE}",
                                 f"make step return {STEP_TYPE}")
        observation, reward, done = result
        if reward is not None and (isinstance(reward, bool) or not isinstance(reward, int | float)):
            raise GroupwiseError(f"environment {where} returned a {type(reward).__name__} reward; expected "
                                 "float | None", f"make step return {STEP_TYPE}")
        if not isinstance(done, bool):
            raise GroupwiseError(f"environment {where} returned a {type(done).__name__} for done; expected bool",
                                 f"make step return {STEP_TYPE}")
        return Reply(as_messages(observation, where, "str | list of messages | None") or [],
                     None if reward is None else float(reward), done)


class ToolStyle:
    """Public methods as tools (TRL's `environment_factory`): every `<tool_call>` of a turn runs, each result is a
    `tool` message; a turn without one is the final answer. A bad call (bad JSON, an unknown tool, bad arguments,
    a tool that raises) is answered with an error message and counted, as TRL feeds a tool's exception back."""

    def __init__(self, environment: Any) -> None:
        self.environment = environment
        self.tools = tool_methods(environment)
        self.schemas = tool_schemas(environment)

    def respond(self, completion: str) -> Reply:
        calls = parse_tool_calls(completion)
        if not calls:
            return Reply([], done=True)
        messages, errors = [], 0
        for call in calls:
            text, failed = self._run(call.name, call.arguments, call.error)
            errors += failed
            messages.append({"role": "tool", "name": call.name, "content": text})
        return Reply(messages, tool_calls=len(calls), tool_errors=errors)

    def _run(self, name: str, arguments: dict[str, Any], error: str | None) -> tuple[str, bool]:
        if error is not None:
            return f"Error: {error}.", True
        if name not in self.tools:
            return f"Error: there is no tool '{name}'; the tools are: {', '.join(sorted(self.tools))}.", True
        try:
            result = self.tools[name](**arguments)
        except Exception as err:  # noqa: BLE001 - the model's call or the tool failed: the model reads why
            return f"Error: {type(err).__name__}: {err}", True
        return (result if isinstance(result, str) else str(result)), False


def episode_style(environment: Any, guard: Guard) -> StepStyle | ToolStyle:
    """Step style when the environment has a `step` method, else tool style."""
    return StepStyle(environment, guard) if callable(getattr(environment, "step", None)) else ToolStyle(environment)


def start(factory: Callable[[], Any], row: dict[str, Any], row_messages: list[Message], guard: Guard
          ) -> tuple[Any, StepStyle | ToolStyle, list[Message]]:
    """A fresh environment reset with the row's columns: (the instance, its style, the first messages)."""
    environment = factory()
    style = episode_style(environment, guard)
    result = guard.call(environment, "reset", **row)
    return environment, style, first_messages(result, row_messages, f"{type(environment).__name__}.reset")


def _type_name(value: Any) -> str:
    return f"a tuple of {len(value)}" if isinstance(value, tuple) else type(value).__name__
