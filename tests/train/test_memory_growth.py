"""Memory does not grow with steps (unsloth#3864), and no option holds a second copy of the weights it need not:
byte counts of the tensors the process holds, each storage once."""

import pytest
import torch

from groupwise.models.tiny import build_tiny_random
from groupwise.rewards.compute import RewardFunction
from groupwise.runtime.memory import current_rss_bytes, live_tensor_bytes, tensor_bytes
from groupwise.train.optim import build_optimizer
from groupwise.train.policy import wrap_policy
from groupwise.train.step import grpo_step

ROWS = [{"prompt": p} for p in ("1+1=", "2*3=", "7-4=", "9+0=")]
LONG = RewardFunction("long", lambda prompts, completions, **_: [float(len(c) > 4) for c in completions], 1.0)


def _run(tiny_config, *overrides: str, steps: int = 20) -> dict[int, tuple[int, int]]:
    """(live tensor bytes, RSS) after steps 2 and `steps` of a tiny-random run."""
    model, tokenizer = build_tiny_random(seed=0)
    cfg = tiny_config("train.learning_rate=1e-2", *overrides)
    policy = wrap_policy(model, cfg)
    optimizer, scheduler = build_optimizer(policy.trainable_parameters(), cfg.train)
    held = {}
    for step in range(1, steps + 1):
        metrics = grpo_step(policy, tokenizer, optimizer, scheduler, cfg, [LONG],
                            lambda n: (ROWS[:n], [r["prompt"] for r in ROWS[:n]]), step=step)
        assert metrics["skipped_update"] == 0.0
        del metrics  # what the loop keeps of a step is written out, not held
        if step in (2, steps):
            held[step] = (live_tensor_bytes(), current_rss_bytes())
    return held


@pytest.mark.parametrize("mode", [["lora.enabled=true"], ["lora.enabled=false", "algorithm.beta=0.04"]])
def test_memory_held_after_step_20_equals_step_2(tiny_config, one_thread, mode):
    held = _run(tiny_config, *mode)
    (tensors_2, rss_2), (tensors_20, rss_20) = held[2], held[20]
    assert tensors_20 == tensors_2  # not a byte more in tensors: no rollout, graph or log-prob kept
    assert rss_20 - rss_2 < 8 * 2**20  # the process as a whole: allocator noise, not a growing heap


def _wrapped_bytes(*overrides: str) -> tuple[int, int]:
    """(bytes of the model's weights, bytes wrap_policy added to the process)."""
    from groupwise.config.load import build_config

    model, _ = build_tiny_random(seed=0)
    weights = tensor_bytes(model.parameters())
    before = live_tensor_bytes()
    cfg = build_config(None, ["model.name=tiny-random", "rollout.weights=shared", "rollout.engine=fast", *overrides])
    policy = wrap_policy(model, cfg)
    added = live_tensor_bytes() - before
    del policy
    return weights, added


def test_only_full_fine_tuning_with_beta_holds_a_reference_copy():
    weights, with_reference = _wrapped_bytes("lora.enabled=false", "algorithm.beta=0.04")
    assert with_reference == pytest.approx(weights, rel=0.01)  # the frozen copy: the weights once more
    _, without = _wrapped_bytes("lora.enabled=false", "algorithm.beta=0")
    assert without < 0.01 * weights  # beta 0: no reference, and the sampler reads the policy's own weights
    _, lora = _wrapped_bytes("lora.enabled=true", "algorithm.beta=0.04", "lora.r=4")
    adapter = 4 * 4 * sum(m.in_features + m.out_features for name, m in build_tiny_random(seed=0)[0].named_modules()
                          if isinstance(m, torch.nn.Linear) and name != "lm_head")  # float32, r 4: A and B
    assert lora == pytest.approx(adapter, rel=0.05)  # the adapter alone: its reference is the adapter switched off
