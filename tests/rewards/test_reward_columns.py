"""What a reward reads from a row: the columns it cannot score without (checked before a run starts) and the gold
as it reads it (issue 28)."""

from __future__ import annotations

import pytest

from groupwise.config.schema import RewardSpec
from groupwise.errors import GroupwiseError
from groupwise.rewards.columns import check_reward_columns, golds_of, required_columns
from groupwise.rewards.compute import RewardFunction, build_reward_functions
from groupwise.rewards.registry import bind_params


def built(*names: str) -> list[RewardFunction]:
    return build_reward_functions([RewardSpec(name=name) for name in names], {"timeout_s": 10})


def trl_accuracy(completions, solution, **kwargs):
    return [float(c == s) for c, s in zip(completions, solution, strict=True)]


def test_built_ins_declare_their_columns_and_user_functions_need_their_parameters_without_default():
    assert [required_columns(f.fn) for f in built("answer_match", "math_equivalence", "countdown_verify",
                                                  "code_tests", "think_answer_format")
            ] == [["answer"], ["answer"], ["numbers", "target"], ["tests"], []]
    assert required_columns(trl_accuracy) == ["solution"]
    assert required_columns(lambda prompts, completions, completion_ids=None, level=3, **kw: []) == []
    assert required_columns(bind_params(trl_accuracy, {"solution": ["x"]})) == []  # a param supplies it


def test_a_missing_column_is_one_error_naming_reward_column_and_fix():
    rows = [{"prompt": "1+1", "solution": "2"}, {"prompt": "2+2", "solution": "4"}]
    check_reward_columns([RewardFunction("trl_accuracy", trl_accuracy, 1.0)], rows)
    with pytest.raises(GroupwiseError) as err:
        check_reward_columns(built("answer_match"), rows, "held-out data")
    assert str(err.value) == (
        "reward 'answer_match' needs an 'answer' column, which the held-out data does not have (its columns: "
        "prompt, solution) -- map one with data.columns (e.g. {answer: YOUR_COLUMN}), or set rewards.functions "
        "to rewards that fit the data")


def test_golds_are_recorded_as_each_reward_reads_them():
    functions = built("answer_match", "math_equivalence", "think_answer_format")
    gsm8k = {"prompt": "q", "answer": "Tom has 3 * 12 = 36 pencils.\n36 - 7 = 29.\n#### 29"}
    assert golds_of(functions, gsm8k) == {"answer_match": "29", "math_equivalence": "29"}
    assert golds_of(functions, {"prompt": "q", "answer": r"so \boxed{1,234}"})["answer_match"] == "1234"
    unmarked = {"prompt": "q", "answer": "36 - 7 = 29 pencils"}  # no ####: the whole cell is the gold
    assert golds_of(functions, unmarked)["answer_match"] == "36 - 7 = 29 pencils"
    assert golds_of(built("code_tests"), {"prompt": "q", "tests": ["assert f()"]}) == {}
