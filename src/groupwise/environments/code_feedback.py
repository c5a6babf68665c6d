"""`code_feedback`: the built-in Python and Rust function tasks over up to `turns` turns: the model writes code,
reads which tests fail (and, in Python, what the call returned), and revises.

Step style. Each step's reward is the change in the share of tests passed, less `turn_cost` from the second turn
on, so an episode's reward sums to the share passed at the end minus the cost of the extra turns, whichever turn
it ends on. The share comes from the same judges as the `code_tests` reward; set `rewards.functions: []` so it is
not counted twice.
"""

from __future__ import annotations

import json
from typing import Any

from groupwise.environments.sandboxed_python import run_python
from groupwise.errors import GroupwiseError
from groupwise.rewards.extract import extract_code, names_used_by_tests
from groupwise.rewards.judges.pyexec import python_interpreter, run_python_tests
from groupwise.rewards.judges.rust import DEFAULT_COMPILE_TIMEOUT_S, RustRunner
from groupwise.rewards.judges.verdict import Verdict
from groupwise.sandbox import ensure_isolation, sandbox_limits

# Runs the solution, then each test on its own; prints one line per failing test (with the value the call
# returned, for `assert CALL == EXPECTED`). Feedback only: the reward comes from the judges.
FEEDBACK_HARNESS = """
import ast, json
tests = json.load(open("tests.json"))
space = {}
try:
    exec(compile(open("solution.py").read(), "solution.py", "exec"), space)
except BaseException as err:
    print(f"Your code does not run: {type(err).__name__}: {err}")
    raise SystemExit
for test in tests:
    try:
        exec(test, dict(space))
    except AssertionError:
        got = ""
        try:
            node = ast.parse(test).body[0]
            if isinstance(node, ast.Assert) and isinstance(node.test, ast.Compare):
                got = f" (got {eval(compile(ast.Expression(node.test.left), 'test', 'eval'), dict(space))!r})"
        except BaseException:
            pass
        print(f"FAILED: {test}{got}")
    except BaseException as err:
        print(f"ERROR: {test}: {type(err).__name__}: {err}")
"""


class CodeFeedback:
    """One episode per row with a `tests` column (python-functions, rust-functions or your own data)."""

    def __init__(self, language: str = "python", turns: int = 3, turn_cost: float = 0.0,
                 sandbox: dict[str, Any] | None = None, max_feedback_chars: int = 600,
                 compile_timeout_s: float = DEFAULT_COMPILE_TIMEOUT_S) -> None:
        if language not in ("python", "rust") or turns < 1 or turn_cost < 0:
            raise GroupwiseError(f"bad code_feedback params language={language!r} turns={turns} "
                                 f"turn_cost={turn_cost}", "use language python or rust, turns >= 1, turn_cost >= 0")
        self.language, self.turns, self.turn_cost = language, turns, turn_cost
        self.limits = sandbox_limits(sandbox)
        ensure_isolation(self.limits)
        if language == "python":
            python_interpreter()
        self.rust = RustRunner(self.limits, None, compile_timeout_s) if language == "rust" else None
        self.max_feedback_chars = max_feedback_chars
        self.tests: list[str] = []
        self.turn, self.share = 0, 0.0

    def reset(self, **row: Any) -> None:
        tests = row.get("tests")
        if isinstance(tests, str):
            tests = json.loads(tests)
        if not isinstance(tests, list) or not tests:
            raise GroupwiseError("code_feedback needs a 'tests' column with a list of tests in every row",
                                 "use data.task python-functions or rust-functions, or give rows tests")
        self.tests, self.turn, self.share = [str(t) for t in tests], 0, 0.0
        return None

    def step(self, completion: str) -> tuple[str | None, float, bool]:
        self.turn += 1
        code = extract_code(completion, self.language, names_used_by_tests(self.tests, self.language))
        verdict = Verdict(0, len(self.tests)) if code is None else self._judge(code)
        reward = verdict.score - self.share - (self.turn_cost if self.turn > 1 else 0.0)
        self.share = verdict.score
        done = verdict.passed == verdict.total or self.turn >= self.turns
        return (None if done else self._feedback(code, verdict)), reward, done

    def _judge(self, code: str) -> Verdict:
        if self.rust is not None:
            return self.rust.test(code, self.tests)
        return run_python_tests(code, self.tests, self.limits)

    def _feedback(self, code: str | None, verdict: Verdict) -> str:
        head = f"{verdict.passed} of {verdict.total} tests pass."
        if code is None:
            return f"{head} I found no {self.language} code in your answer; reply with the function in a code block."
        detail = ""
        if self.language == "python":
            detail = run_python(FEEDBACK_HARNESS, self.limits, self.max_feedback_chars,
                                {"solution.py": code, "tests.json": json.dumps(self.tests)})
        return f"{head}\n{detail}\nFix the function and reply with all of it again.".replace("\n\n", "\n")

