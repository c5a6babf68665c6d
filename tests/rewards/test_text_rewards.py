"""Text and math rewards: R1 format, math equivalence, soft overlong, length penalty, countdown_verify."""

from __future__ import annotations

import threading

import pytest

from groupwise.errors import GroupwiseError
from groupwise.rewards import available_rewards, resolve_reward
from groupwise.rewards.text import final_answer, last_boxed


def test_registered() -> None:
    names = set(available_rewards())
    assert {"think_answer_format", "math_equivalence", "soft_overlong", "length_penalty",
            "countdown_verify"} <= names


@pytest.mark.parametrize("text, strict, loose", [
    ("<think>2+2 is 4</think><answer>4</answer>", 1.0, 1.0),
    ("  <think>\nsteps\n</think>\n\n<answer> 4 </answer>\n", 1.0, 1.0),
    ("Sure! <think>x</think><answer>4</answer>", 0.0, 1.0),
    ("<think>x</think><answer>4</answer> done", 0.0, 1.0),
    ("<think>x</think> then <answer>4</answer>", 0.0, 1.0),
    ("<think>x</think><answer>4</answer><answer>5</answer>", 0.0, 1.0),
    ("<answer>4</answer><think>x</think>", 0.0, 0.0),
    ("<think>x</think>", 0.0, 0.0),
    ("4", 0.0, 0.0),
])
def test_think_answer_format(text: str, strict: float, loose: float) -> None:
    assert resolve_reward("think_answer_format")([], [text]) == [strict]
    assert resolve_reward("think_answer_format", {"strict": False})([], [text]) == [loose]


def test_answer_extraction() -> None:
    assert last_boxed(r"a \boxed{1} then \boxed{\frac{1}{2}} end") == r"\frac{1}{2}"
    assert last_boxed(r"\boxed{unclosed") is None
    assert final_answer(r"<answer> 3 </answer> \boxed{4}") == "3"
    assert final_answer("no answer here") is None


MATH_CASES = [
    (r"<answer>\frac{1}{2}</answer>", "0.5", 1.0),
    ("<answer>0.5</answer>", r"\frac{1}{2}", 1.0),
    ("<answer>$x^2$</answer>", "x^2", 1.0),
    ("<answer>x^2</answer>", "$x^2$", 1.0),
    (r"The total is \boxed{42}.", "42", 1.0),
    (r"\boxed{\{3, 1, 2\}}", r"\{1,2,3\}", 1.0),
    ("<answer>[0, 1)</answer>", "[0,1)", 1.0),
    ("<answer>(0, 1]</answer>", "[0,1)", 0.0),
    (r"so the result is $\frac{\sqrt{2}}{2}$", r"\sqrt{2}/2", 1.0),
    (r"\boxed{41}", "42", 0.0),
    ("<answer>banana ???</answer>", "42", 0.0),
    (r"\boxed{\frac{", "42", 0.0),
    ("", "1", 0.0),
    ("<answer>7</answer>", "", 0.0),
]


def test_math_equivalence() -> None:
    fn = resolve_reward("math_equivalence")
    completions, answers, expected = zip(*MATH_CASES, strict=True)
    assert fn([], list(completions), answer=list(answers)) == list(expected)


def test_math_equivalence_in_a_worker_thread() -> None:
    fn, result = resolve_reward("math_equivalence"), []
    completions, answers = [r"\boxed{0.25}", "x"], ["1/4", "1/4"]
    worker = threading.Thread(target=lambda: result.append(fn([], completions, answer=answers)))
    worker.start()
    worker.join(timeout=60)
    assert result == [[1.0, 0.0]]


def test_math_equivalence_needs_answer_column() -> None:
    with pytest.raises(GroupwiseError, match="'answer' column"):
        resolve_reward("math_equivalence")([], ["1"])


def test_soft_overlong() -> None:
    fn = resolve_reward("soft_overlong", {"max_len": 20, "cache_len": 4})
    ids = [[0] * n for n in (10, 16, 17, 18, 20, 21, 30)]
    # start = 16: 0 up to 16; (16 - L) / 4 within (16, 20]; -1 past 20
    expected = [0.0, 0.0, -0.25, -0.5, -1.0, -1.0, -1.0]
    assert fn([], ["x"] * len(ids), completion_ids=ids) == pytest.approx(expected)


def test_soft_overlong_errors() -> None:
    with pytest.raises(GroupwiseError, match="cache_len"):
        resolve_reward("soft_overlong", {"max_len": 8, "cache_len": 9})
    with pytest.raises(GroupwiseError, match="completion_ids"):
        resolve_reward("soft_overlong", {"max_len": 8, "cache_len": 2})([], ["x"])


def test_length_penalty() -> None:
    fn = resolve_reward("length_penalty", {"target": 10, "scale": 2.0})
    ids = [[0] * n for n in (5, 10, 15, 30)]
    # -2 * max(0, L - 10) / 10
    assert fn([], ["x"] * 4, completion_ids=ids) == pytest.approx([0.0, 0.0, -1.0, -4.0])
    words = resolve_reward("length_penalty", {"target": 2})
    assert words([], ["one two", "one two three four"]) == pytest.approx([0.0, -1.0])
    with pytest.raises(GroupwiseError, match="target"):
        resolve_reward("length_penalty", {"target": 0})


def test_countdown_verify() -> None:
    fn = resolve_reward("countdown_verify")
    completions = ["<think>try</think><answer>(3 + 5) * 2</answer>", "(3 + 5) * 3", "thinking...\n3 * 5 + 1"]
    got = fn([], completions, numbers=[[3, 5, 2], [3, 5, 2], [3, 5, 1]], target=[16, 24, 16])
    assert got == [1.0, 0.0, 1.0]
    with pytest.raises(GroupwiseError, match="'numbers' column"):
        fn([], ["1"], target=[1])
