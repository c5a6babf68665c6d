"""Episodes: the tokens of each turn and of what came back, the loss mask, tools, limits, and bad environments."""

from __future__ import annotations

import logging
import pickle

import pytest
import torch

from groupwise.data.prompts import render_prompt
from groupwise.errors import GroupwiseError
from groupwise.models.tiny import build_tiny_tokenizer
from groupwise.rollout.engines.fast import FastEngine
from groupwise.rollout.episodes.runner import EnvironmentSpec, run_episodes
from groupwise.rollout.episodes.styles import Guard
from groupwise.rollout.sampler import sample_rollouts

ROWS = [{"prompt": "1+1?", "expression": "1 + 1"}, {"prompt": "2+4?", "expression": "2 + 4"}]
CALL = '<tool_call>{"name": "add", "arguments": {"a": 1, "b": 2}}</tool_call>'


class Again:
    """Step style: 'again N' after each turn, reward 0.5 a turn, done after `turns` turns."""

    turns = 2

    def reset(self, **row):
        self.turn = 0

    def step(self, completion):
        self.turn += 1
        return f"again {self.turn}", 0.5, self.turn >= self.turns


class Adder:
    def reset(self, **row):
        self.total = None

    def add(self, a: int, b: int) -> int:
        """Add two numbers.

        Args:
            a: The first number.
            b: The second number.
        """
        if a < 0:
            raise ValueError("no negatives")
        self.total = a + b
        return a + b


def ids(text: str) -> list[int]:
    return build_tiny_tokenizer()(text, add_special_tokens=False).input_ids


def run(engine, environment, *, group_size=2, max_new_tokens=200, max_turns=3, max_episode_tokens=400,
        on_error="raise", rows=ROWS):
    spec = EnvironmentSpec(environment, max_turns, max_episode_tokens, step_style=hasattr(environment, "step"),
                           guard=Guard(on_error))
    return run_episodes(engine, build_tiny_tokenizer(), rows, spec, group_size=group_size,
                        max_new_tokens=max_new_tokens, keys=[7, 8][: len(rows)])


def test_an_environment_done_after_one_turn_samples_exactly_what_the_plain_sampler_does(tiny):
    class OneTurn:
        def reset(self, **row):
            return None

        def step(self, completion):
            return None, 1.0, True

    model, tokenizer = tiny
    engine = FastEngine(model, torch.float32)
    episode = run(engine, OneTurn, group_size=3, max_new_tokens=5)
    texts = [render_prompt(row, tokenizer) for row in ROWS]
    plain = sample_rollouts(engine, tokenizer, texts, group_size=3, max_new_tokens=5, keys=[7, 8])
    for name in ("prompt_ids", "prompt_mask", "completion_ids", "completion_mask", "sampling_logp", "ended_with_eos"):
        assert torch.equal(getattr(episode, name), getattr(plain, name)), name
    assert torch.equal(episode.loss_mask, plain.completion_mask) and episode.completions == plain.completions
    assert episode.episodes.rewards == [1.0] * 6 and episode.episodes.turns == [1] * 6


def test_the_environment_s_tokens_sit_between_the_turns_attended_but_not_trained(scripted_engine):
    engine = scripted_engine(build_tiny_tokenizer(), lambda context, sample: f"t{context.count('again')}")
    rollout = run(engine, Again, rows=ROWS[:1])
    eos = build_tiny_tokenizer().eos_token_id
    turn1, between, turn2 = ids("t0") + [eos], ids("\nu:again 1\na:"), ids("t1") + [eos]
    n = len(turn1 + between + turn2)
    assert rollout.prompt_ids[0].tolist() == ids("u:1+1?\na:")
    assert rollout.completion_ids[0, :n].tolist() == turn1 + between + turn2
    assert rollout.completion_mask[0].tolist() == [1] * n
    assert rollout.loss_mask[0].tolist() == [1] * len(turn1) + [0] * len(between) + [1] * len(turn2)
    assert rollout.sampling_logp[0].tolist() == [-0.5] * len(turn1) + [0.0] * len(between) + [-0.5] * len(turn2)
    log = rollout.episodes
    assert log.messages[0] == [{"role": "user", "content": "1+1?"}, {"role": "assistant", "content": "t0"},
                               {"role": "user", "content": "again 1"}, {"role": "assistant", "content": "t1"}]
    assert log.rewards == [1.0, 1.0] and log.turns == [2, 2] and rollout.completions == ["t1", "t1"]
    assert rollout.ended_with_eos.tolist() == [True, True] and log.first_reply == [1, 1]
    assert log.metrics(rollout.ended_with_eos) == {"env/turns_mean": 2.0, "env/tool_calls_mean": 0.0,
                                                   "env/tool_errors": 0.0, "env/truncated_frac": 0.0,
                                                   "env/failed": 0.0}
    sent = pickle.loads(pickle.dumps(log))  # to another rank: without the live environments
    assert sent.environments is None and sent.messages == log.messages and len(log.environments) == 2


def test_a_tool_call_runs_the_method_and_its_result_comes_back_as_a_tool_message(scripted_engine):
    engine = scripted_engine(build_tiny_tokenizer(), lambda context, sample: "3" if "t:" in context else CALL)
    rollout = run(engine, Adder, rows=ROWS[:1])
    log, eos = rollout.episodes, build_tiny_tokenizer().eos_token_id
    assert [m["role"] for m in log.messages[0]] == ["system", "user", "assistant", "tool", "assistant"]
    assert log.messages[0][0]["content"].startswith('You can call these tools:\n{"name": "add"')
    assert log.messages[0][3] == {"role": "tool", "name": "add", "content": "3"}
    assert log.tool_calls == [1, 1] and log.tool_errors == [0, 0] and log.environments[0].total == 3
    assert rollout.completions == ["3", "3"] and not log.scored  # tool style: the reward functions score it
    between = ids("\nt:3\na:")
    expected = ids(CALL) + [eos] + between + ids("3") + [eos]
    assert rollout.completion_ids[0].tolist() == expected
    assert rollout.loss_mask[0].tolist() == [1] * (len(ids(CALL)) + 1) + [0] * len(between) + [1, 1]


def test_bad_tool_calls_are_answered_with_an_error_and_counted():
    from groupwise.rollout.episodes.styles import ToolStyle

    turn = ('<tool_call>{"name": "add", "arguments": {"a": -1, "b": 2}}</tool_call>'
            '<tool_call>{"name": "add", "arguments": {"a": 1}}</tool_call>'
            "<tool_call>{bad json</tool_call>"
            '<tool_call>{"name": "mul", "arguments": {}}</tool_call>')
    reply = ToolStyle(Adder()).respond(turn)
    assert [m["content"] for m in reply.messages] == [
        "Error: ValueError: no negatives",
        "Error: TypeError: Adder.add() missing 1 required positional argument: 'b'",
        "Error: the tool call is not valid JSON (Expecting property name enclosed in double quotes at character 1).",
        "Error: there is no tool 'mul'; the tools are: add."]
    assert (reply.tool_calls, reply.tool_errors, reply.done) == (4, 4, False)
    assert ToolStyle(Adder()).respond("It is 3.").done  # no call: the final answer


def test_an_episode_that_reaches_max_episode_tokens_ends_truncated(scripted_engine):
    engine = scripted_engine(build_tiny_tokenizer(), lambda context, sample: "abcdefgh")
    rollout = run(engine, Again, rows=ROWS[:1], max_episode_tokens=12)  # 9 tokens, then 13 would not fit
    assert rollout.episodes.turns == [1, 1] and rollout.ended_with_eos.tolist() == [False, False]
    assert rollout.completion_mask.sum(-1).tolist() == [9, 9]
    cut = run(engine, Again, rows=ROWS[:1], max_episode_tokens=5)  # the budget ends inside turn 1
    assert cut.completion_ids[0].tolist() == ids("abcde") and cut.episodes.metrics(cut.ended_with_eos)[
        "env/truncated_frac"] == 1.0


def test_a_turn_cut_at_max_new_tokens_goes_on_and_max_turns_ends_the_episode(scripted_engine):
    Again.turns = 99
    try:
        engine = scripted_engine(build_tiny_tokenizer(), lambda context, sample: "abcdef")
        rollout = run(engine, Again, rows=ROWS[:1], max_new_tokens=3, max_turns=2)
    finally:
        Again.turns = 2
    assert rollout.completion_ids[0].tolist() == ids("abc") + ids("\nu:again 1\na:") + ids("abc")
    assert rollout.episodes.turns == [2, 2] and rollout.ended_with_eos.tolist() == [False, False]  # last turn cut


def test_resets_that_differ_per_instance_share_the_group_prompt_and_open_the_completion_untrained(scripted_engine):
    made = []

    class Numbered:
        def __init__(self):
            made.append(self)
            self.number = len(made)

        def reset(self, **row):
            return f" #{self.number}"

        def step(self, completion):
            return None, 0.0, True

    rollout = run(scripted_engine(build_tiny_tokenizer(), lambda context, sample: "x"), Numbered, rows=ROWS[:1])
    assert rollout.prompt_ids[0].tolist() == ids("u:1+1? #")  # what the two first prompts share
    eos = build_tiny_tokenizer().eos_token_id
    assert [rollout.completion_ids[r].tolist() for r in (0, 1)] == [ids("1\na:x") + [eos], ids("2\na:x") + [eos]]
    assert rollout.loss_mask[0].tolist() == [0, 0, 0, 0, 1, 1]
    assert rollout.episodes.messages[1][0] == {"role": "user", "content": "1+1? #2"}


class Raises:
    def reset(self, **row):
        self.odd = row["expression"].startswith("1")

    def step(self, completion):
        if self.odd:
            raise ValueError("odd rows break this environment")
        return None, 1.0, True


def test_an_environment_that_raises_stops_the_run_with_one_line_or_fails_its_episode_alone(scripted_engine,
                                                                                          caplog):
    engine = scripted_engine(build_tiny_tokenizer(), lambda context, sample: "x")
    with pytest.raises(GroupwiseError) as raised:
        run(engine, Raises)
    assert raised.value.problem == "environment Raises.step raised ValueError: odd rows break this environment"
    with caplog.at_level(logging.WARNING):
        rollout = run(engine, Raises, on_error="zero")
    assert rollout.episodes.failed == [True, True, False, False] and rollout.episodes.rewards[2:] == [1.0, 1.0]
    assert [r.getMessage().count("Raises.step raised") for r in caplog.records] == [1]  # one warning, once

    class ResetRaises(Raises):
        def reset(self, **row):
            raise KeyError("answer")

    failed = run(engine, ResetRaises, on_error="zero")
    assert failed.episodes.failed == [True] * 4 and failed.episodes.turns == [0] * 4
    assert failed.completion_mask.sum().item() == 0


def test_an_environment_that_returns_the_wrong_type_gets_one_line_naming_the_method_and_the_type(scripted_engine):
    class ResetReturnsInt:
        def reset(self, **row):
            return 3

        def step(self, completion):
            return None, 1.0, True

    class StepReturnsPair(ResetReturnsInt):
        def reset(self, **row):
            return None

        def step(self, completion):
            return "more", 1.0

    engine = scripted_engine(build_tiny_tokenizer(), lambda context, sample: "x")
    with pytest.raises(GroupwiseError) as raised:
        run(engine, ResetReturnsInt)
    assert raised.value.problem == ("environment ResetReturnsInt.reset returned int; expected str, a list of "
                                    "{role, content} messages, or None")
    with pytest.raises(GroupwiseError) as raised:
        run(engine, StepReturnsPair)
    assert raised.value.problem == ("environment StepReturnsPair.step returned a tuple of 2; expected (observation: "
                                    "str | list of messages | None, reward: float | None, done: bool)")


def assert_same_greedy_episodes(model, engine) -> None:
    """Two-turn greedy episodes on `engine` equal those on the fast engine: messages, tokens, masks, log-probs."""
    spec = EnvironmentSpec(Again, max_turns=3, max_episode_tokens=60, step_style=True)
    tokenizer = build_tiny_tokenizer()
    runs = [run_episodes(e, tokenizer, ROWS, spec, group_size=2, max_new_tokens=6, greedy=True)
            for e in (engine, FastEngine(model, torch.float32))]
    assert runs[0].episodes.messages == runs[1].episodes.messages and runs[0].episodes.turns == [2] * 4
    for name in ("completion_ids", "completion_mask", "loss_mask"):
        assert torch.equal(getattr(runs[0], name), getattr(runs[1], name)), name
    torch.testing.assert_close(runs[0].sampling_logp, runs[1].sampling_logp, atol=1e-4, rtol=0)


def test_episodes_run_on_the_hf_engine_as_on_the_fast_one(tiny):
    from groupwise.rollout.engines.hf import HFEngine

    assert_same_greedy_episodes(tiny[0], HFEngine(tiny[0]))


@pytest.mark.slow  # starts vLLM (~15 s) unless test_vllm_engine.py's engine of the same model is up already
def test_episodes_run_on_the_vllm_engine_as_on_the_fast_one():
    pytest.importorskip("vllm")
    from groupwise.config.load import build_config
    from groupwise.models.tiny import build_tiny_random
    from groupwise.rollout.engines.vllm import VLLMEngine

    model, _ = build_tiny_random(seed=0, hidden=128)  # head size 32: what vLLM's CPU attention runs
    rollout = build_config(None, ["model.name=tiny-random", "rollout.engine=vllm"]).rollout
    assert_same_greedy_episodes(model, VLLMEngine(model, rollout))
