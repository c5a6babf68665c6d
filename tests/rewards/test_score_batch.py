import asyncio
import math

import pytest

from groupwise.config.schema import RewardSpec
from groupwise.errors import GroupwiseError
from groupwise.rewards.compute import RewardFunction, build_reward_functions, score_batch

COMPLETIONS = ["7", "the answer is 8", "<answer>9</answer>", "no idea"]
COLUMNS = {"answer": ["7", "8", "9", "1"]}


def _score(functions, **kwargs):
    return score_batch(functions, ["q"] * 4, COMPLETIONS, None, COLUMNS, **kwargs)


def test_weights_combine_and_none_excludes_a_function_for_a_sample():
    def half(prompts, completions, **_):
        return [0.5, None, 0.5, None]

    functions = build_reward_functions([RewardSpec(name="answer_match", weight=2.0)]) + [
        RewardFunction("half", half, 1.0)]
    scores = _score(functions)
    assert scores.names == ["answer_match", "half"]
    assert scores.total.tolist() == [2.5, 2.0, 2.5, 0.0]  # 2*1+0.5, 2*1, 2*1+0.5, 2*0
    assert math.isnan(scores.per_function[1, 1])


def test_a_sample_no_function_scores_is_nan():
    functions = [RewardFunction("none", lambda prompts, completions, **_: [None] * 4, 1.0)]
    assert all(math.isnan(v) for v in _score(functions).total.tolist())


def test_async_reward_functions_are_awaited():
    async def slow_len(prompts, completions, **_):
        await asyncio.sleep(0.01)
        return [float(len(c)) for c in completions]

    assert _score([RewardFunction("slow_len", slow_len, 1.0)]).total.tolist() == [1.0, 15.0, 18.0, 7.0]


def _fails_on_third(prompts, completions, **_):
    if "<answer>9</answer>" in completions:
        raise ValueError("cannot parse")
    return [1.0] * len(completions)


def test_a_raising_function_stops_with_its_name_and_the_sample_index():
    with pytest.raises(GroupwiseError) as err:
        _score([RewardFunction("picky", _fails_on_third, 1.0)])
    assert "reward function 'picky' failed on sample 2: ValueError: cannot parse" in str(err.value)
    assert "rewards.on_error: zero" in str(err.value)


def _skips_second_fails_on_third(prompts, completions, **_):
    _fails_on_third(prompts, completions)
    return [None if c == COMPLETIONS[1] else 1.0 for c in completions]


def test_on_error_zero_scores_the_failing_sample_zero_and_counts_it():
    scores = _score([RewardFunction("picky", _fails_on_third, 1.0)], on_error="zero")
    assert scores.total.tolist() == [1.0, 1.0, 0.0, 1.0]
    assert scores.errors == {"picky": 1}
    # rescored one sample at a time: a sample the function leaves unscored (None) stays unscored, not 0
    scores = _score([RewardFunction("picky", _skips_second_fails_on_third, 1.0)], on_error="zero")
    assert [None if math.isnan(v) else v for v in scores.total.tolist()] == [1.0, None, 0.0, 1.0]
    assert scores.errors == {"picky": 1}


def test_wrong_return_length_or_type_is_a_clear_error():
    with pytest.raises(GroupwiseError, match="returned 1 values for 4 completions"):
        _score([RewardFunction("short", lambda prompts, completions, **_: [1.0], 1.0)])
    with pytest.raises(GroupwiseError, match="returned str"):
        _score([RewardFunction("text", lambda prompts, completions, **_: ["1"] * 4, 1.0)])


def test_user_reward_by_file_reference(tmp_path):
    file = tmp_path / "mine.py"
    file.write_text("def brevity(prompts, completions, completion_ids=None, **kw):\n"
                    "    return [1.0 / (1 + len(c)) for c in completions]\n")
    functions = build_reward_functions([RewardSpec(name=f"{file}:brevity")])
    assert functions[0].name == "brevity"
    assert _score(functions).total.tolist()[0] == 0.5
    with pytest.raises(GroupwiseError, match="unknown reward 'nope'"):
        build_reward_functions([RewardSpec(name="nope")])
    with pytest.raises(GroupwiseError, match="is not a function"):
        build_reward_functions([RewardSpec(name=f"{file}:missing")])


def test_reward_values_diagnostics_are_collected_per_function():
    from groupwise.rewards.values import RewardValues

    def flagged(prompts, completions, **_):
        return RewardValues([1.0, 0.0, None, 0.5], {"limit_hit": [1.0, 0.0, None, 0.0], "short": [1.0]})

    plain = RewardFunction("plain", lambda prompts, completions, **_: [0.0] * 4, 1.0)
    scores = _score([RewardFunction("flagged", flagged, 1.0), plain])
    assert list(scores.diagnostics) == ["flagged/limit_hit"]  # a column of the wrong length is dropped
    column = scores.diagnostics["flagged/limit_hit"].tolist()
    assert column[:2] == [1.0, 0.0] and math.isnan(column[2]) and column[3] == 0.0
    assert scores.total.tolist() == [1.0, 0.0, 0.0, 0.5]
