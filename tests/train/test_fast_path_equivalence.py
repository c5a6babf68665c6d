"""The optimized training path (shared prompts, small micro-batches) equals the plain path in loss and update."""

import dataclasses
import math

import pytest
import torch

from groupwise.config.load import build_config
from groupwise.models.tiny import build_tiny_random
from groupwise.rollout.engines.hf import HFEngine
from groupwise.rollout.sampler import sample_rollouts
from groupwise.train.batch import micro_batches
from groupwise.train.policy import wrap_policy
from groupwise.train.step import _gather, _logprobs, one_optimizer_step, reference_and_old_logprobs

BASE = ["model.name=tiny-random", "rollout.engine=hf", "train.bf16=false", "rollout.prompts_per_step=3",
        "rollout.group_size=4", "train.max_grad_norm=1e9", "lora.r=4", "algorithm.beta=0.1"]


def _update(extra: list[str], rollout=None, attention: str = "sdpa", loss_mask=None, advantages=None, prepare=None):
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
        rollout = sample_rollouts(HFEngine(policy.model), tokenizer, ["1+1=", "2*3=", "hello"], group_size=4,
                                          max_new_tokens=7, temperature=1.0)
    if prepare is not None:  # e.g. set the sampler's log-probs from this policy's own
        rollout = prepare(policy, rollout, cfg)
    advantages = torch.linspace(-1.5, 1.5, 12) if advantages is None else advantages
    loss_mask = rollout.completion_mask if loss_mask is None else loss_mask
    trainable = {n: p for n, p in policy.model.named_parameters() if p.requires_grad}
    before = {n: p.detach().clone() for n, p in trainable.items()}
    optimizer = torch.optim.SGD(list(trainable.values()), lr=1.0)
    fixed = reference_and_old_logprobs(policy, rollout, loss_mask, cfg)
    stats = one_optimizer_step(policy, optimizer, rollout, torch.arange(12), advantages, loss_mask, fixed, cfg)
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


LENGTHS = [7, 1, 3, 6, 2, 7, 5, 4, 1, 3, 7, 2]  # completion lengths (EOS at different places)
EMPTY = [1, 4, 5, 9]  # rows whose every token is masked, as DAPO's overlong filter does


def _uneven(rollout, pad_id: int = 0):
    """The rollout with completions of LENGTHS tokens, and a loss mask that also empties the EMPTY rows."""
    keep = torch.arange(rollout.completion_ids.shape[1])[None, :] < torch.tensor(LENGTHS)[:, None]
    uneven = dataclasses.replace(rollout, completion_ids=torch.where(keep, rollout.completion_ids, pad_id),
                                 completion_mask=keep.long(), sampling_logp=rollout.sampling_logp * keep)
    loss_mask = uneven.completion_mask.clone()
    loss_mask[EMPTY] = 0
    return uneven, loss_mask


@pytest.mark.parametrize("agg", ["seq-mean-token-mean", "token-mean", "seq-mean-token-sum-norm"])
def test_micro_batches_of_uneven_and_empty_rows_equal_the_full_batch(agg):
    # micro-batches of 3 rows hold 10, 6, 10 and 9 loss tokens and 2, 1, 3 and 2 non-empty rows: a share
    # per row instead of per token (token-mean), or one that counts empty rows (seq-mean), changes the loss
    _, _, generated = _update([f"algorithm.agg={agg}", "train.micro_batch_size=12"])
    rollout, loss_mask = _uneven(generated)
    plain_stats, plain_step, _ = _update([f"algorithm.agg={agg}", "train.micro_batch_size=12",
                                          "model.gradient_checkpointing=true"], rollout, loss_mask=loss_mask)
    fast_stats, fast_step, _ = _update([f"algorithm.agg={agg}", "train.micro_batch_size=3"], rollout, "eager",
                                       loss_mask=loss_mask)
    assert abs(fast_stats["loss"] - plain_stats["loss"]) < 1e-5
    assert abs(fast_stats["kl"] - plain_stats["kl"]) < 1e-5
    assert any(d.abs().max() > 1e-4 for d in plain_step.values())
    for name in plain_step:
        torch.testing.assert_close(fast_step[name], plain_step[name], atol=2e-5, rtol=1e-4)


def _sampler_below_trainer(policy, rollout, cfg):
    """sampling_logp = the trainer's own log-prob - log 1.5 on even rows, - log 4 on odd rows."""
    rows = torch.arange(len(rollout.completions))
    chunks = micro_batches(rollout, rows, cfg.train.micro_batch_size, rollout.completion_mask)
    with torch.no_grad(), policy.training_precision():
        logp = _gather(chunks, rollout, lambda mb: _logprobs(policy.model, mb, cfg, cfg.rollout.temperature)[0])
    shift = torch.where(rows % 2 == 0, math.log(1.5), math.log(4.0))[:, None]
    return dataclasses.replace(rollout, sampling_logp=(logp - shift) * rollout.completion_mask)


def test_importance_weights_reach_the_update_by_hand():
    # rho = pi_train / pi_sampler = 1.5 (even rows) and 4, truncated at the cap 2 (odd rows). With one update
    # per batch the clipped loss is -w A ratio at ratio 1, so its step equals the plain step with advantages
    # times w. Swapping trainer and sampler log-probs gives w = 1/1.5 and 1/4 instead and fails.
    no_kl = ["algorithm.beta=0", "train.micro_batch_size=3"]
    tis_stats, tis_step, rollout = _update(no_kl + ["algorithm.importance_sampling=token", "algorithm.is_cap=2"],
                                           prepare=_sampler_below_trainer)
    assert tis_stats["is_weight_mean"] == pytest.approx((1.5 + 2.0) / 2, rel=1e-4)
    assert tis_stats["is_frac_capped"] == pytest.approx(0.5)
    w = torch.where(torch.arange(12) % 2 == 0, 1.5, 2.0)
    _, expected_step, _ = _update(no_kl, rollout, advantages=torch.linspace(-1.5, 1.5, 12) * w)
    assert any(d.abs().max() > 1e-4 for d in expected_step.values())
    for name in expected_step:
        torch.testing.assert_close(tis_step[name], expected_step[name], atol=2e-5, rtol=1e-4)
