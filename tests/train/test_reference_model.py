import torch

from groupwise.config.load import build_config
from groupwise.models.tiny import build_tiny_random
from groupwise.train.policy import wrap_policy


def _policy(*overrides):
    model, _ = build_tiny_random(seed=0)
    return wrap_policy(model, build_config(None, ["model.name=tiny-random", "rollout.engine=hf", *overrides]))


def test_lora_reference_is_the_same_model_with_the_adapter_off():
    policy = _policy("lora.enabled=true")
    assert policy.reference is None
    ids = torch.tensor([[5, 6, 7, 8]])
    with torch.no_grad():
        for name, param in policy.model.named_parameters():
            if "lora_B" in name:
                param.fill_(0.1)
        with policy.as_reference() as reference:
            assert reference is policy.model
            ref_logits = reference(ids).logits
        base_logits = policy.model.get_base_model()(ids).logits  # adapter on
    assert not torch.allclose(ref_logits, base_logits)
    with torch.no_grad(), policy.model.disable_adapter():
        torch.testing.assert_close(policy.model(ids).logits, ref_logits)


def test_full_fine_tuning_keeps_a_frozen_copy_only_when_beta_is_positive():
    with_kl = _policy("lora.enabled=false", "algorithm.beta=0.04")
    assert with_kl.reference is not None and with_kl.reference is not with_kl.model
    assert not any(p.requires_grad for p in with_kl.reference.parameters())
    assert _policy("lora.enabled=false", "algorithm.beta=0").reference is None
