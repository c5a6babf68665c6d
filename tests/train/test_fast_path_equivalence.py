"""The optimized training path (shared prompts, small micro-batches) equals the plain path in loss and update."""

import pytest
import torch

from groupwise.config.load import build_config
from groupwise.models.tiny import build_tiny_random
from groupwise.rollout.generate import generate_group_rollouts
from groupwise.train.policy import wrap_policy
from groupwise.train.step import one_optimizer_step, reference_and_old_logprobs

BASE = ["model.name=tiny-random", "rollout.engine=hf", "train.bf16=false", "rollout.prompts_per_step=3",
        "rollout.group_size=4", "train.max_grad_norm=1e9", "lora.r=4", "algorithm.beta=0.1"]


def _update(extra: list[str], rollout=None, attention: str = "sdpa"):
    model, tokenizer = build_tiny_random(seed=0)
    model.set_attn_implementation(attention)
    cfg = build_config(None, BASE + extra)
    torch.manual_seed(0)  # peft draws lora_A from the global generator
    policy = wrap_policy(model, cfg)
    torch.manual_seed(1)
    for name, param in policy.model.named_parameters():
        if "lora_B" in name:
            param.data.normal_(0, 0.05)
    if rollout is None:
        torch.manual_seed(2)
        rollout = generate_group_rollouts(policy.model, tokenizer, ["1+1=", "2*3=", "hello"], group_size=4,
                                          max_new_tokens=7, temperature=1.0)
    advantages = torch.linspace(-1.5, 1.5, 12)
    trainable = {n: p for n, p in policy.model.named_parameters() if p.requires_grad}
    before = {n: p.detach().clone() for n, p in trainable.items()}
    optimizer = torch.optim.SGD(list(trainable.values()), lr=1.0)
    fixed = reference_and_old_logprobs(policy, rollout, rollout.completion_mask, cfg)
    stats = one_optimizer_step(policy, optimizer, rollout, torch.arange(12), advantages, rollout.completion_mask,
                               fixed, cfg)
    return stats, {n: before[n] - p.detach() for n, p in trainable.items()}, rollout


@pytest.mark.parametrize("agg", ["seq-mean-token-mean", "token-mean", "seq-mean-token-sum-norm"])
def test_shared_prompt_micro_batches_equal_plain_full_batch(agg):
    plain_stats, plain_step, rollout = _update([f"algorithm.agg={agg}", "train.micro_batch_size=12",
                                                "model.gradient_checkpointing=true"])
    # the fast path as a CPU run takes it: eager attention, shared prompts, small micro-batches
    fast_stats, fast_step, _ = _update([f"algorithm.agg={agg}", "train.micro_batch_size=3"], rollout, "eager")
    assert abs(fast_stats["loss"] - plain_stats["loss"]) < 1e-5
    assert abs(fast_stats["kl"] - plain_stats["kl"]) < 1e-5
    assert any(d.abs().max() > 1e-4 for d in plain_step.values())  # the update is real
    for name in plain_step:
        torch.testing.assert_close(fast_step[name], plain_step[name], atol=2e-5, rtol=1e-4)
