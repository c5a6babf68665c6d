import pytest

from groupwise.errors import GroupwiseError
from groupwise.rewards.basic import last_number, make_answer_match, make_format_regex, tagged_answer


def test_extraction():
    assert last_number("3 + 4 = 7, so 7.") == "7"
    assert last_number("it is 1,234.5 and -2") == "-2"
    assert last_number("no digits") is None
    assert tagged_answer("x <answer> 42 </answer> y <answer>43</answer>") == "43"


def test_answer_match_modes():
    reward = make_answer_match()
    completions = ["3 + 4 = 7", "<answer>7</answer> then 9", "7.0000001", "8"]
    assert reward([], completions, answer=["7"] * 4) == [1.0, 1.0, 1.0, 0.0]
    exact = make_answer_match(extract="tag", numeric=False)
    assert exact([], ["<answer>7</answer>", "7", "<answer>7.0</answer>"], answer=["7"] * 3) == [1.0, 0.0, 0.0]
    with pytest.raises(GroupwiseError, match="unknown answer extraction"):
        make_answer_match(extract="first")


def test_format_regex():
    reward = make_format_regex(pattern=r"<answer>.*?</answer>", score=0.2)
    assert reward([], ["<answer>1</answer>", "1"]) == [0.2, 0.0]
    full = make_format_regex(pattern=r"\d+", full_match=True)
    assert full([], [" 12 ", "12 apples"]) == [1.0, 0.0]
    with pytest.raises(GroupwiseError, match="not a valid regex"):
        make_format_regex(pattern="(")
