"""bf16 training passes over a bf16 LoRA base: the adapter takes bf16 input, with peft's casts restored after."""

import torch

from groupwise.config.load import build_config
from groupwise.models.logprobs import naive_sequence_logprobs
from groupwise.models.tiny import build_tiny_random
from groupwise.train.policy import wrap_policy


def _bf16_lora_policy():
    model, _ = build_tiny_random(seed=0)
    model.to(torch.bfloat16)
    cfg = build_config(None, ["model.name=tiny-random", "train.bf16=true", "lora.r=4", "rollout.engine=hf"])
    policy = wrap_policy(model, cfg)
    for name, param in policy.model.named_parameters():
        if "lora_B" in name:
            param.data.normal_(0, 0.1)
    return policy


def _upcasts(monkeypatch):
    """Counts bf16 -> float32 casts made through Tensor.to (how peft aligns an input with its adapter)."""
    seen = []
    original = torch.Tensor.to

    def spy(self, *args, **kwargs):
        out = original(self, *args, **kwargs)
        if self.dtype == torch.bfloat16 and out.dtype == torch.float32:
            seen.append(tuple(self.shape))
        return out

    monkeypatch.setattr(torch.Tensor, "to", spy)
    return seen


def test_training_precision_feeds_bf16_to_the_adapter_and_matches_casting(monkeypatch):
    torch.manual_seed(0)
    policy = _bf16_lora_policy()
    assert policy.bf16 and all(p.dtype == torch.float32 for p in policy.trainable_parameters())
    vocab = policy.model.config.vocab_size
    ids, mask = torch.randint(3, vocab, (2, 9)), torch.ones(2, 9, dtype=torch.long)
    layers = [m for m in policy.model.modules() if hasattr(m, "lora_A")]
    upcasts = _upcasts(monkeypatch)
    with torch.autocast("cpu", dtype=torch.bfloat16):  # peft's default: the input is cast to float32 first
        casting = naive_sequence_logprobs(policy.model, ids, mask, 4)
    casting_upcasts = len(upcasts)
    upcasts.clear()
    with policy.training_precision():
        direct = naive_sequence_logprobs(policy.model, ids, mask, 4)
    # what is left is the model's own (RMSNorm computes in float32); peft's one cast per adapted layer is gone
    assert casting_upcasts - len(upcasts) == len(layers) > 0
    torch.testing.assert_close(direct, casting, atol=0.05, rtol=0.02)  # the same bf16 products either way
    assert layers and all(getattr(m, "cast_input_dtype_enabled", True) for m in layers)  # restored on exit
