"""The built-in environments: `python_tool` runs the model's code in the sandbox; `code_feedback` shows the failing
tests and rewards the share passed at the end, less the cost of the extra turns."""

from __future__ import annotations

import pytest

from groupwise.config.load import build_config
from groupwise.environments.code_feedback import CodeFeedback
from groupwise.environments.python_tool import EXAMPLE, PythonTool
from groupwise.environments.registry import configured_environment
from groupwise.errors import GroupwiseError
from groupwise.rollout.episodes.tool_calls import parse_tool_calls

TESTS = ["assert add(1, 2) == 3", "assert add(0, 0) == 0", "assert add(2, 2) == 4"]
SUBTRACTS = "```python\ndef add(a, b):\n    return a - b\n```"
ADDS = "Fixed:\n```python\ndef add(a, b):\n    return a + b\n```"


def test_the_python_tool_returns_what_the_program_printed_or_its_error():
    tool = PythonTool(max_output_chars=40)
    assert tool.python("print(217 * 358)") == "77686"
    assert tool.python("print('x' * 100)") == "x" * 20 + "\n... (60 characters cut) ...\n" + "x" * 20
    assert tool.python("1 / 0").endswith("by zero")  # a traceback keeps its last line
    assert tool.calls == 3


def test_the_python_tool_shows_a_last_bare_expression_as_a_notebook_cell_does():
    tool = PythonTool(max_output_chars=400)
    assert tool.python("x = 6\nx * 7  # the answer") == "42" and tool.python("'a' + 'b'") == "'ab'"  # its repr
    assert tool.python("print(1); None") == "1" and tool.python("def f():\n    return 2\nf(\n)") == "2"
    assert tool.python("x = 2") == "(no output)"
    assert tool.python("x = 1\ny") == ('Traceback (most recent call last):\n  File "/box/main.py", line 2, in '
                                       "<module>\n    y\nNameError: name 'y' is not defined")  # as python says it
    assert tool.python("x = (1 +").endswith("SyntaxError: '(' was never closed")
    assert tool.python("import sys\nprint('a')\nsys.exit(3)\n4") == "a"  # SystemExit ends it as it would


def test_the_python_tool_opens_with_one_worked_exchange_unless_told_not_to():
    row = {"prompt": "What is 123 * 456?", "answer": "56088"}
    messages = PythonTool().reset(**row)
    assert messages == [*EXAMPLE, {"role": "user", "content": "What is 123 * 456?"}]
    assert parse_tool_calls(EXAMPLE[1]["content"])[0].arguments == {"code": "print(217 * 358)"}
    assert PythonTool(example=False).reset(**row) is None


def test_code_feedback_shows_the_failing_tests_and_sums_to_the_final_share_less_the_turn_cost():
    environment = CodeFeedback(turn_cost=0.1)
    environment.reset(prompt="Write add.", tests=TESTS)
    feedback, reward, done = environment.step(SUBTRACTS)
    assert feedback == ("1 of 3 tests pass.\nFAILED: assert add(1, 2) == 3 (got -1)\n"
                        "FAILED: assert add(2, 2) == 4 (got 0)\nFix the function and reply with all of it again.")
    assert (reward, done) == (pytest.approx(1 / 3), False)
    feedback, second, done = environment.step(ADDS)
    assert (feedback, done) == (None, True) and reward + second == pytest.approx(1.0 - 0.1)
    environment.reset(tests=TESTS)
    assert environment.step("I do not know.")[0].startswith("0 of 3 tests pass. I found no python code")


def test_code_feedback_stops_after_its_turns_and_needs_tests():
    environment = CodeFeedback(turns=1)
    environment.reset(tests=TESTS)
    assert environment.step(SUBTRACTS) == (None, pytest.approx(1 / 3), True)
    with pytest.raises(GroupwiseError, match="code_feedback needs a 'tests' column"):
        environment.reset(prompt="no tests")


def test_a_config_names_a_built_in_with_params_and_bad_params_are_one_line():
    cfg = build_config(None, ["environment.name=code_feedback", "environment.params={turns: 2, turn_cost: 0.05}",
                              "data.task=python-functions", "rewards.functions=[]", "sandbox.timeout_s=3"])
    spec = configured_environment(cfg)
    environment = spec.factory()
    assert (environment.turns, environment.turn_cost, environment.limits.timeout_s) == (2, 0.05, 3.0)
    assert spec.step_style and spec.max_turns == 3 and spec.max_episode_tokens == 512
    with pytest.raises(GroupwiseError) as raised:
        configured_environment(cfg.override(["environment.params={turn: 2}"]))
    assert raised.value.problem == ("environment CodeFeedback got bad params {'turns': 2, 'turn_cost': 0.05, 'turn': "
                                    "2}: got an unexpected keyword argument 'turn'")
    with pytest.raises(GroupwiseError, match="unknown environment 'python'"):
        configured_environment(cfg.override(["environment.name=python"]))
    assert configured_environment(build_config(None, [])) is None
