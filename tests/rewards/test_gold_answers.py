"""Gold answers as datasets write them (GSM8K `#### N`, `\\boxed{}`, plain numbers) and `#### N` completions."""

from __future__ import annotations

import pytest

from groupwise.rewards import resolve_reward
from groupwise.rewards.answers import gold_answer, is_number, marked_answer, without_thousands

GSM8K_GOLD = "Natalia sold 48/2 = <<48/2=24>>24 clips in May.\nShe sold 48+24 = <<48+24=72>>72 clips.\n#### 72"


@pytest.mark.parametrize("gold, expected", [
    (GSM8K_GOLD, "72"),
    ("He pays 1,000 + 234 = 1,234 dollars.\n#### 1,234", "1234"),
    ("#### -3.5", "-3.5"),
    ("#### $1,250.", "1250"),
    (r"so $x = \boxed{\frac{1}{2}}$", r"\frac{1}{2}"),
    (r"\boxed{2,048}", "2048"),
    ("42", "42"),
    (" 12,345 ", "12345"),
    ("1,2", "1,2"),  # not thousands separators: kept
    ("#### yes.", "yes"),
    ("x^2 + 1", "x^2 + 1"),
])
def test_gold_answer_formats(gold: str, expected: str) -> None:
    assert gold_answer(gold) == expected


def test_marker_and_number_helpers() -> None:
    assert marked_answer("work...\n#### 25 apples\n") == "25"
    assert marked_answer("#### **18**") == "18"
    assert marked_answer("no marker 25") is None and marked_answer("####   \n") is None
    heading = "#### Step 1: 2 * 7 = 14\n#### 42\n#### Step 2: check"  # Markdown headings in a completion
    assert marked_answer(heading) == "Step 2: check" and marked_answer(heading, numbers_only=True) == "42"
    assert without_thousands("-1,000,000.25") == "-1000000.25" and without_thousands("1,23") == "1,23"
    assert is_number("1,234") and is_number("-0.5") and is_number("1e3")
    assert not is_number("12 apples") and not is_number(r"\frac{1}{2}") and not is_number("")


def test_answer_match_reads_gsm8k_gold() -> None:
    """The Found case: gold '... #### 25' against a completion that says exactly '25' scored 0."""
    reward = resolve_reward("answer_match")
    gold = "She has 5 * 5 = <<5*5=25>>25 stamps.\n#### 25"
    completions = ["25", "The answer is 25.", "<answer>25</answer>", "24", "5 * 5 = 25\n#### 25",
                   "#### 24\nso 25 would be wrong", "#### Step 1: multiply\nShe has 5 * 5 = 25 stamps."]
    assert reward([], completions, answer=[gold] * 7) == [1.0, 1.0, 1.0, 0.0, 1.0, 0.0, 1.0]
    assert reward([], ["It costs $1,234."], answer=["#### 1,234"]) == [1.0]
    assert reward([], ["7", "8"], answer=[r"\boxed{7}"] * 2) == [1.0, 0.0]


def test_answer_match_last_number_mode_is_unchanged() -> None:
    reward = resolve_reward("answer_match", {"extract": "last_number"})
    assert reward([], ["#### 24\nso 25 would be wrong"], answer=["#### 25"]) == [1.0]


def test_math_equivalence_reads_marked_completions_and_gold() -> None:
    """The Found case: math_equivalence did not read '#### 25' in the model's own output."""
    reward = resolve_reward("math_equivalence")
    gold = "She has 5 * 5 = <<5*5=25>>25 stamps.\n#### 25"
    completions = ["She has 5 * 5 = 25 stamps.\n#### 25\n\nCheck: 5 * 5 = 25, plus 3 more is 28.",
                   "Working: 5 * 5 = 24.\n#### 24", "The total is 1,234 dollars.\n#### 1,234", r"\boxed{1234}"]
    golds = [gold, gold, "#### 1,234", "1,234"]
    assert reward([], completions, answer=golds) == [1.0, 0.0, 1.0, 1.0]
