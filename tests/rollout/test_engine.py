import torch

from groupwise.config.load import build_config
from groupwise.models.logprobs import naive_sequence_logprobs
from groupwise.rollout.engines.fast import FastEngine
from groupwise.rollout.engines.hf import HFEngine
from groupwise.rollout.sampler import sample_rollouts
from groupwise.rollout.token_draws import sample_categorical, top_p_filter
from groupwise.train.policy import wrap_policy

PROMPTS = ["1+2=", "what is 7?", "a"]


def _lora_policy(tiny):
    model, tokenizer = tiny
    cfg = build_config(None, ["model.name=tiny-random", "rollout.engine=hf", "lora.r=4"])
    policy = wrap_policy(model, cfg)
    torch.manual_seed(5)
    for name, param in policy.model.named_parameters():
        if "lora_B" in name:  # a trained-looking adapter, so merging matters
            param.data.normal_(0, 0.05)
    return policy, tokenizer


def test_fast_engine_decodes_exactly_like_generate_under_greedy(tiny):
    policy, tokenizer = _lora_policy(tiny)
    engine = FastEngine(policy.model, torch.float32)
    plain = sample_rollouts(HFEngine(policy.model), tokenizer, PROMPTS, group_size=2, max_new_tokens=12, greedy=True)
    fast = sample_rollouts(engine, tokenizer, PROMPTS, group_size=2, max_new_tokens=12, greedy=True)
    assert fast.completions == plain.completions
    assert torch.equal(fast.completion_mask, plain.completion_mask)
    assert torch.equal(fast.ended_with_eos, plain.ended_with_eos)


def test_sync_merges_the_adapter_without_touching_the_policy(tiny):
    policy, _ = _lora_policy(tiny)
    before = {k: v.clone() for k, v in policy.model.state_dict().items()}
    engine = FastEngine(policy.model, torch.float32)
    after = policy.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    layer = policy.model.base_model.model.model.layers[0].self_attn.q_proj
    expected = layer.base_layer.weight + layer.get_delta_weight("default")
    torch.testing.assert_close(engine.model.model.layers[0].self_attn.q_proj.weight, expected)


def test_recorded_logprobs_are_the_models_own_at_the_sampling_temperature(tiny):
    policy, tokenizer = _lora_policy(tiny)
    engine = FastEngine(policy.model, torch.float32)
    torch.manual_seed(0)
    rollout = sample_rollouts(engine, tokenizer, PROMPTS, group_size=3, max_new_tokens=8, temperature=0.7)
    ids = torch.cat([rollout.prompt_ids, rollout.completion_ids], 1)
    mask = torch.cat([rollout.prompt_mask, rollout.completion_mask], 1)
    with torch.no_grad():
        expected = naive_sequence_logprobs(policy.model, ids, mask, rollout.prompt_ids.shape[1], temperature=0.7)
    valid = rollout.completion_mask.bool()
    torch.testing.assert_close(rollout.sampling_logp[valid], expected[valid], atol=1e-4, rtol=1e-4)
    assert rollout.completion_ids.shape[0] == 9 and len(set(rollout.completions)) > 1


def test_top_p_keeps_the_smallest_set_reaching_p():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    kept = torch.isfinite(top_p_filter(logits, 0.8))
    assert kept.tolist() == [[True, True, False, False]]  # 0.5 + 0.3 reaches 0.8
    assert torch.isfinite(top_p_filter(logits, 0.81)).tolist() == [[True, True, True, False]]
    assert torch.isfinite(top_p_filter(logits, 0.1)).tolist() == [[True, False, False, False]]
    assert torch.equal(top_p_filter(logits, 1.0), logits)


def test_bf16_engine_samples_valid_groups(tiny):
    policy, tokenizer = _lora_policy(tiny)
    engine = FastEngine(policy.model, torch.bfloat16)
    rollout = sample_rollouts(engine, tokenizer, PROMPTS, group_size=2, max_new_tokens=6)
    rows = zip(rollout.prompt_ids, rollout.prompt_mask, strict=True)
    assert [tokenizer.decode(ids[m.bool()]) for ids, m in rows] == [p for p in PROMPTS for _ in range(2)]
    rows = zip(rollout.completion_ids, rollout.completion_mask, strict=True)
    assert rollout.completions == [tokenizer.decode(ids[m.bool()], skip_special_tokens=True) for ids, m in rows]
    # the log-prob recorded for each drawn token is the bf16 copy's own, as a full forward pass computes it
    ids = torch.cat([rollout.prompt_ids, rollout.completion_ids], 1)
    mask = torch.cat([rollout.prompt_mask, rollout.completion_mask], 1)
    with torch.no_grad():
        own = naive_sequence_logprobs(engine.model, ids, mask, rollout.prompt_ids.shape[1])
    valid = rollout.completion_mask.bool()
    torch.testing.assert_close(rollout.sampling_logp[valid], own[valid].float(), atol=1e-3, rtol=0)
    assert (rollout.sampling_logp[~valid] == 0).all()


def test_a_bf16_copy_keeps_a_small_adapter_delta_that_merging_would_round_away(tiny):
    """A delta below bf16's resolution of W: merged into bf16 weights it vanishes on most elements; the copy
    adds it beside the frozen layer instead, computing what the trainer's bf16 autocast passes compute."""
    policy, tokenizer = _lora_policy(tiny)
    layers = [m for n, m in policy.model.named_modules() if n.endswith("self_attn.q_proj")]
    for layer in layers:
        layer.base_layer.weight.data = layer.base_layer.weight.data.bfloat16().float()  # exact in bf16
        layer.lora_B["default"].weight.data.mul_(1e-3)
    layer, x = layers[0], torch.randn(64, layers[0].in_features).bfloat16()
    w, delta = layer.base_layer.weight, layer.get_delta_weight("default")
    assert ((w + delta).bfloat16().float() == w).float().mean() > 0.4  # what a merged copy would hold

    engine = FastEngine(policy.model, torch.bfloat16)
    copy = engine.model.model.layers[0].self_attn.q_proj
    assert torch.equal(copy.weight.float(), w)  # the frozen weight, not W + delta
    a = layer.lora_A["default"].weight.bfloat16()
    scaled_b = (layer.lora_B["default"].weight * layer.scaling["default"]).bfloat16()
    linear = torch.nn.functional.linear
    with torch.no_grad():
        assert torch.equal(copy(x), linear(x, w.bfloat16()) + linear(linear(x, a), scaled_b))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            trainer = layer(x)  # peft under autocast: bf16 W x, plus bf16 s B(A x)
    torch.testing.assert_close(copy(x).float(), trainer.float(), atol=2e-3, rtol=1e-2)

    rollout = sample_rollouts(engine, tokenizer, PROMPTS, group_size=2, max_new_tokens=6)
    ids = torch.cat([rollout.prompt_ids, rollout.completion_ids], 1)
    mask = torch.cat([rollout.prompt_mask, rollout.completion_mask], 1)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):  # the trainer's bf16 passes
        scored = naive_sequence_logprobs(policy.model, ids, mask, rollout.prompt_ids.shape[1])
    valid = rollout.completion_mask.bool()
    torch.testing.assert_close(rollout.sampling_logp[valid], scored[valid].float(), atol=0.05, rtol=0)

    for layer in layers:  # a later sync carries the adapter's new values
        layer.lora_B["default"].weight.data.zero_()
    engine.load_weights(policy.model)
    with torch.no_grad():
        assert torch.equal(copy(x), torch.nn.functional.linear(x, copy.weight))


def test_inverse_cdf_sampling_draws_each_token_with_its_probability():
    torch.manual_seed(0)
    probs = torch.tensor([[0.1, 0.0, 0.6, 0.3], [0.0, 0.0, 0.0, 1.0]]).repeat(20000, 1)
    draws = sample_categorical(probs).view(20000, 2)
    first = torch.bincount(draws[:, 0], minlength=4) / 20000
    # binomial standard error at n=20000 is at most 0.0035: 0.015 is over four of them
    torch.testing.assert_close(first, torch.tensor([0.1, 0.0, 0.6, 0.3]), atol=0.015, rtol=0)
    assert first[1] == 0 and (draws[:, 1] == 3).all()  # zero-probability tokens are never drawn


def test_unnormalised_rows_sample_like_their_normalised_twins():
    torch.manual_seed(1)
    weights = torch.tensor([[2.0, 6.0, 0.0, 2.0]]).repeat(20000, 1)
    share = torch.bincount(sample_categorical(weights), minlength=4) / 20000
    torch.testing.assert_close(share, torch.tensor([0.2, 0.6, 0.0, 0.2]), atol=0.015, rtol=0)


def test_shared_engine_decodes_from_the_policy_itself_without_a_copy(tiny):
    policy, tokenizer = _lora_policy(tiny)
    policy.model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    policy.model.train()  # as between updates: checkpointing would drop the KV cache in train mode
    plain = sample_rollouts(HFEngine(policy.model), tokenizer, PROMPTS, group_size=2, max_new_tokens=12, greedy=True)
    engine = FastEngine(policy.model, torch.float32, shared=True)
    shared = sample_rollouts(engine, tokenizer, PROMPTS, group_size=2, max_new_tokens=12, greedy=True)
    assert shared.completions == plain.completions
    assert torch.equal(shared.completion_mask, plain.completion_mask)
    params = {id(p) for p in policy.model.parameters()}
    assert all(id(p) in params for p in engine.model.parameters())  # the policy's own tensors, no second model
    assert policy.model.training  # its mode is given back


def test_sampler_shares_weights_on_request_and_copies_on_cpu_by_default(tiny):
    from groupwise.rollout.sampler import Sampler

    policy, _ = _lora_policy(tiny)
    auto = Sampler(policy.model, build_config(None, ["rollout.dtype=float32"]).rollout)
    shared = Sampler(policy.model, build_config(None, ["rollout.weights=shared"]).rollout)
    assert not auto.engine.shared and shared.engine.shared
    own = {id(p) for p in policy.model.parameters()}
    assert all(id(p) in own for p in shared.engine.model.parameters())  # decodes with the policy's tensors
    assert not any(id(p) in own for p in auto.engine.model.parameters())  # a copy of its own, in float32
    assert {p.dtype for p in auto.engine.model.parameters()} == {torch.float32}
