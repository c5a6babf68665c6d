"""The memory model's activations against what autograd saves in groupwise's own training pass (shared prompts)."""

import string

import pytest
import torch
from transformers import LlamaForCausalLM

from groupwise.config.load import build_config
from groupwise.models.memory_model import LlamaShape, Setup, llama_config, step_parts
from groupwise.models.tiny import build_tiny_tokenizer
from groupwise.rewards.compute import RewardFunction
from groupwise.train import step as step_module
from groupwise.train.optim import build_optimizer
from groupwise.train.policy import wrap_policy

SHAPE = LlamaShape(hidden=128, intermediate=256, layers=3, heads=8, kv_heads=2, head_dim=16, vocab=97, tied=True)
PROMPT, COMPLETION, GROUP = 48, 12, 4


def _saved_in_update(monkeypatch) -> int:
    """Bytes autograd saves during one update of a LoRA run on SHAPE (each storage once, weights excluded)."""
    tokenizer = build_tiny_tokenizer()
    cfg = build_config(None, ["model.name=tiny-random", "rollout.prompts_per_step=1", f"rollout.group_size={GROUP}",
                              f"train.micro_batch_size={GROUP}", "train.bf16=false", "rollout.weights=shared",
                              f"rollout.max_new_tokens={COMPLETION}", "lora.r=4", "algorithm.beta=0"])
    torch.manual_seed(0)
    model = LlamaForCausalLM(llama_config(SHAPE, pad_token_id=tokenizer.pad_token_id))
    model.set_attn_implementation("sdpa")
    policy = wrap_policy(model, cfg)
    optimizer, scheduler = build_optimizer(policy.trainable_parameters(), cfg.train)
    weights = {p.untyped_storage().data_ptr() for p in policy.model.parameters()}
    saved: dict[int, int] = {}

    def pack(t):
        if t.untyped_storage().data_ptr() not in weights:
            saved[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    real = step_module.policy_updates

    def hooked(*args, **kwargs):
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            return real(*args, **kwargs)

    monkeypatch.setattr(step_module, "policy_updates", hooked)
    prompt = (string.ascii_letters * 2)[:PROMPT]
    parity = RewardFunction("parity", lambda prompts, completions, completion_ids, **_: [
        float(sum(ids) % 2) for ids in completion_ids], 1.0)
    metrics = step_module.grpo_step(policy, tokenizer, optimizer, scheduler, cfg, [parity],
                                    lambda n: ([{"prompt": prompt}] * n, [prompt] * n), step=1)
    assert metrics["completion_len/max"] == COMPLETION  # the padded batch: what the pass runs over
    return sum(saved.values())


def test_activations_of_the_shared_prompt_pass_match_the_model(monkeypatch):
    saved = _saved_in_update(monkeypatch)
    setup = Setup(lora=True, r=4, checkpointing=False, group=GROUP, prompt_tokens=PROMPT,
                  completion_tokens=COMPLETION, compute_bytes=4)
    # the prompt once, the completions, and their repeated keys and values: 11% high here, 8% at h 256
    assert saved == pytest.approx(step_parts(SHAPE, setup)["activations"], rel=0.15)
