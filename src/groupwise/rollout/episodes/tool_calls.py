"""Tool calls in a model's turn, `<tool_call>{"name": ..., "arguments": {...}}</tool_call>` (the Hermes/Qwen
format most chat templates use), and the tools an environment offers: its public methods (TRL's rule)."""

from __future__ import annotations

import inspect
import json
import re
from dataclasses import dataclass, field
from typing import Any

from transformers.utils import get_json_schema

from groupwise.errors import GroupwiseError

TOOL_CALL = re.compile(r"<tool_call>\s*(.*?)\s*(?:</tool_call>|$)", re.DOTALL)  # an unclosed last call counts
RESERVED = frozenset({"reset", "step"})  # an environment's methods that are never tools


@dataclass(frozen=True)
class ToolCall:
    """One parsed call; `error` says why it cannot run (then name and arguments may be empty)."""

    name: str = ""
    arguments: dict[str, Any] = field(default_factory=dict)
    error: str | None = None


def parse_tool_calls(text: str) -> list[ToolCall]:
    """Every `<tool_call>` block of `text`, in order; bad JSON or a missing name is a call with an `error`."""
    return [_parse_one(body) for body in TOOL_CALL.findall(text)]


def _parse_one(body: str) -> ToolCall:
    try:
        call = json.loads(body)
    except json.JSONDecodeError as err:
        return ToolCall(error=f"the tool call is not valid JSON ({err.msg} at character {err.pos})")
    if not isinstance(call, dict) or not isinstance(call.get("name"), str):
        return ToolCall(error='a tool call needs {"name": ..., "arguments": {...}}')
    arguments = call.get("arguments", call.get("parameters", {}))
    if isinstance(arguments, str):  # some models write the arguments as a JSON string
        try:
            arguments = json.loads(arguments)
        except json.JSONDecodeError:
            return ToolCall(call["name"], error="the tool call's arguments are not a JSON object")
    if not isinstance(arguments, dict):
        return ToolCall(call["name"], error="the tool call's arguments are not a JSON object")
    return ToolCall(call["name"], arguments)


def tool_methods(environment: Any) -> dict[str, Any]:
    """The environment's tools: its public methods other than reset and step, bound, by name."""
    return {name: getattr(environment, name) for name, _ in inspect.getmembers(type(environment), inspect.isfunction)
            if not name.startswith("_") and name not in RESERVED}


def tool_schemas(environment: Any) -> list[dict[str, Any]]:
    """The JSON schema of each tool, from its type hints and its docstring's Args: section."""
    schemas = []
    for name, method in tool_methods(environment).items():
        try:
            schemas.append(get_json_schema(method))
        except Exception as err:  # noqa: BLE001 - transformers' parsing errors have no common base
            raise GroupwiseError(f"{type(environment).__name__}.{name} cannot be offered as a tool: {err}",
                                 "give each public method type hints and a docstring with an Args: line per "
                                 "argument (TRL's rule), or start its name with _") from err
    return schemas


def tools_description(schemas: list[dict[str, Any]]) -> str:
    """How to call the tools, for a chat template that does not render them: each schema, the call format and
    one example call."""
    first = schemas[0]["function"]
    argument = next(iter(first.get("parameters", {}).get("properties", {})), None)
    example = json.dumps({"name": first["name"], "arguments": {argument: "..."} if argument else {}})
    listed = "\n".join(json.dumps(schema["function"]) for schema in schemas)
    return (f"You can call these tools:\n{listed}\nTo call one, write <tool_call>{example}</tool_call> and end "
            "your turn; its result comes back in the next message. Answer without a tool call when you are done.")
