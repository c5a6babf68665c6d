"""`python_tool`: arithmetic too hard to do reliably in the head (data.task arithmetic, e.g. task_params
{digits: 3, operators: "*"}), with a `python` tool that runs the model's code in the sandbox.

Tool style, as TRL's `environment_factory`: the public method `python` is the tool; the task's own reward
(answer_match on the last assistant turn) scores the answer. `example: true` seeds the format: the conversation
opens with one worked exchange (a question, a tool call, its result, the answer), because the embedded model
never writes a tool call unprompted (docs/environments.md has the measured rates).
"""

from __future__ import annotations

from typing import Any

from groupwise.environments.sandboxed_python import run_python
from groupwise.rewards.judges.pyexec import python_interpreter
from groupwise.sandbox import ensure_isolation, sandbox_limits

EXAMPLE = [
    {"role": "user", "content": "What is 217 * 358?"},
    {"role": "assistant", "content": '<tool_call>{"name": "python", "arguments": {"code": "print(217 * 358)"}}'
                                     "</tool_call>"},
    {"role": "tool", "name": "python", "content": "77686"},
    {"role": "assistant", "content": "77686"},
]


class PythonTool:
    """One episode: the row's question (after the worked example when `example`); the model may call `python`."""

    def __init__(self, sandbox: dict[str, Any] | None = None, max_output_chars: int = 300,
                 example: bool = True) -> None:
        self.limits = sandbox_limits(sandbox)
        ensure_isolation(self.limits)
        python_interpreter()  # root without bwrap and no interpreter an unprivileged uid can run: fail now
        self.max_output_chars, self.example = max_output_chars, example
        self.calls = 0

    def reset(self, **row: Any) -> list[dict[str, Any]] | None:
        self.calls = 0
        if not self.example or not isinstance(row.get("prompt"), str):
            return None
        return [*EXAMPLE, {"role": "user", "content": row["prompt"]}]

    def python(self, code: str) -> str:
        """Run a Python program in a sandbox and return what it printed.

        Args:
            code: A complete Python program; print() the values you need.
        """
        self.calls += 1
        return run_python(code, self.limits, self.max_output_chars, echo=True)  # `217 * 358` alone shows 77686
