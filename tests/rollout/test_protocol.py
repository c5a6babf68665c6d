"""The rollout engine protocol: both engines implement it, and an engine of one's own plugs into training
through `Sampler` alone (nothing in train/ names an engine)."""

from __future__ import annotations

import pytest
import torch

from groupwise.config.load import build_config
from groupwise.models.logprobs import naive_sequence_logprobs
from groupwise.rewards.compute import RewardFunction
from groupwise.rollout.completions import Completions, SamplingParams, completions_from_tokens
from groupwise.rollout.engines import ENGINES, build_engine
from groupwise.rollout.engines.fast import FastEngine
from groupwise.rollout.engines.hf import HFEngine
from groupwise.rollout.protocol import RolloutEngine
from groupwise.rollout.sampler import Sampler
from groupwise.train.optim import build_optimizer
from groupwise.train.policy import wrap_policy
from groupwise.train.step import grpo_step


class ScriptedEngine:
    """Answers every prompt with `script[i]` for sample i (cut at max_new_tokens), log-prob -1 per token."""

    def __init__(self, script: list[list[int]]) -> None:
        self.script, self.loads, self.calls = script, 0, []

    def generate(self, prompt_ids: list[list[int]], params: SamplingParams) -> Completions:
        self.calls.append((prompt_ids, params))
        rows = [self.script[i][: params.max_new_tokens] for _ in prompt_ids for i in range(params.group_size)]
        width = max(map(len, rows))
        tokens = torch.tensor([row + [params.pad_id] * (width - len(row)) for row in rows])
        return completions_from_tokens(tokens, -torch.ones(tokens.shape), params.eos_id, params.pad_id)

    def load_weights(self, policy: torch.nn.Module) -> None:
        self.loads += 1


def test_both_engines_are_rollout_engines_and_the_config_names_them(tiny):
    model, _ = tiny
    assert isinstance(FastEngine(model, torch.float32), RolloutEngine) and isinstance(HFEngine(model), RolloutEngine)
    assert isinstance(ScriptedEngine([[1]]), RolloutEngine) and sorted(ENGINES) == ["fast", "hf", "vllm", "vllm_server"]
    assert type(build_engine(model, build_config(None, ["rollout.engine=hf"]).rollout)) is HFEngine


def test_completions_end_at_the_first_eos_with_their_finish_reasons():
    out = completions_from_tokens(torch.tensor([[5, 2, 7], [5, 6, 7]]), torch.full((2, 3), -0.5), eos_id=2, pad_id=0)
    assert out.token_ids.tolist() == [[5, 2, 0], [5, 6, 7]] and out.lengths.tolist() == [2, 3]
    assert out.logprobs.tolist() == [[-0.5, -0.5, 0.0], [-0.5, -0.5, -0.5]]
    assert out.finish_reasons == ["stop", "length"]


def test_a_sampler_turns_an_engines_completions_into_a_rollout(tiny):
    model, tokenizer = tiny
    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
    engine = ScriptedEngine([[40, 41, eos], [42, 43, 44, 45, 46]])
    cfg = build_config(None, ["rollout.max_new_tokens=4"]).rollout
    rollout = Sampler(model, cfg, engine=engine)(tokenizer, ["ab", "abcd ef"], group_size=2, keys=[7, 8])
    ids, params = engine.calls[0]
    assert ids == [tokenizer("ab", add_special_tokens=False).input_ids,
                   tokenizer("abcd ef", add_special_tokens=False).input_ids]
    assert (params.group_size, params.max_new_tokens, params.keys, params.eos_id) == (2, 4, [7, 8], eos)
    assert rollout.completion_ids.tolist() == [[40, 41, eos, pad], [42, 43, 44, 45]] * 2
    assert rollout.completion_mask.tolist() == [[1, 1, 1, 0], [1, 1, 1, 1]] * 2
    assert rollout.ended_with_eos.tolist() == [True, False] * 2
    assert rollout.sampling_logp.tolist() == [[-1, -1, -1, 0], [-1, -1, -1, -1]] * 2
    assert rollout.completions[1] == tokenizer.decode([42, 43, 44, 45])
    short = len(ids[0])  # the shorter prompt is left-padded to the longer one's width
    assert rollout.prompt_mask[0].tolist() == [0] * (len(ids[1]) - short) + [1] * short


def _token_logprobs(model, rollout) -> torch.Tensor:
    """[N, C] the model's log-prob of each completion token (0 past a completion's end)."""
    ids = torch.cat([rollout.prompt_ids, rollout.completion_ids], 1)
    mask = torch.cat([rollout.prompt_mask, rollout.completion_mask], 1)
    with torch.no_grad():
        logp = naive_sequence_logprobs(model, ids, mask, rollout.prompt_ids.shape[1])
    return logp * rollout.completion_mask


def test_an_engine_of_ones_own_trains_through_the_unchanged_step(tiny, tiny_config):
    """The step trains on exactly the engine's tokens and log-probs, makes the rewarded completion likelier, and
    the engine reloads the weights after the update, before it samples again."""
    model, tokenizer = tiny
    eos = tokenizer.eos_token_id
    cfg = tiny_config("rollout.group_size=2", "rollout.prompts_per_step=2", "algorithm.beta=0",
                      "train.learning_rate=0.05", "lora.dropout=0")
    policy = wrap_policy(model, cfg)
    engine = ScriptedEngine([[30, 31, eos], [32, eos]])
    policy.sampler = Sampler(policy.model, cfg.rollout, engine=engine)
    optimizer, scheduler = build_optimizer(policy.trainable_parameters(), cfg.train)
    rows = [{"prompt": "x"}, {"prompt": "y"}]
    starts_with_30 = RewardFunction("first", lambda prompts, completions, completion_ids, **_: [
        float(ids[0] == 30) for ids in completion_ids], 1.0)

    def prompts(n: int):
        return rows[:n], [r["prompt"] for r in rows[:n]]

    scripted = policy.sampler(tokenizer, ["x", "y"], group_size=2)
    before = _token_logprobs(policy.model, scripted)
    metrics = grpo_step(policy, tokenizer, optimizer, scheduler, cfg, [starts_with_30], prompts, step=1)
    rollout = metrics["_batch"].rollout
    assert torch.equal(rollout.completion_ids, scripted.completion_ids) and engine.loads == 0
    assert metrics["reward/mean"] == 0.5 and metrics["completion_len/mean"] == 2.5
    valid = scripted.completion_mask.bool()  # the gap is the trainer's log-prob against the engine's -1
    assert metrics["sampler_gap_mean"] == pytest.approx(float((before[valid] + 1).abs().mean()), rel=1e-4)
    after, before = _token_logprobs(policy.model, scripted).sum(-1), before.sum(-1)
    assert after[0] - after[1] > before[0] - before[1] + 0.5  # the rewarded completion gained on the other
    grpo_step(policy, tokenizer, optimizer, scheduler, cfg, [starts_with_30], prompts, step=2)
    assert engine.loads == 1  # step 1's update reached the engine before step 2 sampled
