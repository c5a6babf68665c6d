"""Per-completion random streams: the counter-based uniforms, and completions that do not depend on the batch."""

import pytest
import torch

from groupwise.config.load import build_config
from groupwise.rollout.engines.fast import FastEngine
from groupwise.rollout.engines.hf import HFEngine
from groupwise.rollout.sampler import sample_rollouts
from groupwise.rollout.streams import counter_uniforms, mix_key, reference_uniform, splitmix64
from groupwise.train.policy import wrap_policy

pytestmark = pytest.mark.usefixtures("one_thread")


def test_splitmix64_matches_the_published_first_output():
    # SplitMix64 seeded with 0: its first output is 0xE220A8397B1DCDAF (the reference C implementation)
    assert splitmix64(0) == 0xE220A8397B1DCDAF


def test_vectorised_uniforms_equal_the_plain_python_twin():
    keys = [0, 1, 12345, (1 << 62) + 7, (1 << 63) - 1, mix_key(3, 4, 5)]
    for counter in (0, 1, 17, 1000):
        got = counter_uniforms(torch.tensor(keys, dtype=torch.long), counter).tolist()
        assert got == [reference_uniform(k, counter) for k in keys]
        assert all(0.0 <= u < 1.0 for u in got)


def test_keys_differ_by_every_part_and_are_non_negative_int64():
    keys = {mix_key(0, s, r, p) for s in range(3) for r in range(2) for p in range(8)}
    assert len(keys) == 48 and all(0 <= k < 1 << 63 for k in keys)


def test_uniforms_are_uniform_enough():
    u = counter_uniforms(torch.arange(20000, dtype=torch.long), 3)
    assert abs(float(u.mean()) - 0.5) < 0.01 and abs(float((u < 0.25).float().mean()) - 0.25) < 0.01


def _policy(tiny, engine: str):
    model, tokenizer = tiny
    policy = wrap_policy(model, build_config(None, ["model.name=tiny-random", f"rollout.engine={engine}",
                                                    "lora.r=4", "rollout.dtype=float32"]))
    return policy, tokenizer


@pytest.mark.parametrize("engine", ["fast", "hf"])
def test_a_prompt_gets_the_same_completions_in_any_position_or_subset(tiny, engine):
    policy, tokenizer = _policy(tiny, engine)
    prompts, keys = ["1+2=", "3+4=", "5+6="], [11, 22, 33]

    def sample(indices, seed):
        torch.manual_seed(seed)  # the global generator must not matter
        sampler = FastEngine(policy.model, torch.float32) if engine == "fast" else HFEngine(policy.model, batch_size=4)
        return sample_rollouts(sampler, tokenizer, [prompts[i] for i in indices], group_size=3, max_new_tokens=8,
                               keys=[keys[i] for i in indices])

    whole = sample([0, 1, 2], seed=0).completions
    alone = sample([2], seed=1).completions
    swapped = sample([2, 0], seed=2).completions
    assert alone == whole[6:9] == swapped[0:3]
    assert swapped[3:6] == whole[0:3]
    assert len(set(whole)) > 3  # really sampled, not greedy


def test_the_fast_engine_and_generate_draw_the_same_tokens_from_the_same_keys(tiny):
    policy, tokenizer = _policy(tiny, "hf")
    fast = sample_rollouts(FastEngine(policy.model, torch.float32), tokenizer, ["1+2=", "3+4="], group_size=2,
                                                                   max_new_tokens=8, keys=[5, 6])
    plain = sample_rollouts(HFEngine(policy.model), tokenizer, ["1+2=", "3+4="], group_size=2, max_new_tokens=8,
                                    keys=[5, 6])
    assert fast.completions == plain.completions
