"""The memory model's formulas against what torch and peft allocate on small shapes, and Meta's 1B count."""

import dataclasses

import pytest
import torch
from peft import LoraConfig, get_peft_model
from transformers import LlamaForCausalLM

from groupwise.models.memory_model import (
    SHAPES,
    LlamaShape,
    Setup,
    activation_values_per_token,
    kv_cache_bytes,
    llama_config,
    llama_parameters,
    lora_parameters,
    phase_peaks,
    step_parts,
)
from groupwise.runtime.memory import tensor_bytes

SMALL = LlamaShape(hidden=96, intermediate=200, layers=2, heads=6, kv_heads=2, head_dim=16, vocab=97, tied=True)


def _model(shape: LlamaShape) -> LlamaForCausalLM:
    torch.manual_seed(0)
    return LlamaForCausalLM(llama_config(shape)).eval()


@pytest.mark.parametrize("tied", [True, False])
def test_parameter_count_is_the_built_models(tied):
    shape = dataclasses.replace(SMALL, tied=tied)
    model = _model(shape)
    assert llama_parameters(shape) == sum(p.numel() for p in model.parameters())  # tied: counted once
    assert tensor_bytes(model.parameters()) == 4 * llama_parameters(shape)


def test_llama_3_2_1b_has_its_published_parameter_count():
    # 128256 x 2048 embeddings + 16 x (4.19M q + 2 x 1.05M k, v + 4.19M o + 3 x 16.8M MLP + 4096 norms) + 2048
    assert llama_parameters(SHAPES["1b"]) == 1_235_814_400


def test_lora_parameter_count_is_peft_s():
    model = get_peft_model(_model(SMALL), LoraConfig(r=4, target_modules="all-linear", task_type="CAUSAL_LM"))
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert lora_parameters(SMALL, 4) == trainable


def test_kv_cache_bytes_are_the_cache_a_forward_returns():
    ids = torch.randint(0, SMALL.vocab, (3, 11))
    with torch.no_grad():
        cache = _model(SMALL)(input_ids=ids, use_cache=True).past_key_values
    held = tensor_bytes(t for layer in cache.layers for t in (layer.keys, layer.values))
    assert held == kv_cache_bytes(SMALL, rows=3, tokens=11, dtype_bytes=4)


def _saved_bytes(shape: LlamaShape, rows: int, tokens: int, checkpointing: bool) -> int:
    """Bytes autograd saves for backward in a training forward of the decoder (each storage once)."""
    model = _model(shape).train()
    model.set_attn_implementation("sdpa")
    if checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    weights = {p.untyped_storage().data_ptr() for p in model.parameters()}
    saved = {}

    def pack(t):
        if t.untyped_storage().data_ptr() not in weights:
            saved[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model.model(input_ids=torch.randint(0, shape.vocab, (rows, tokens)), use_cache=False)
    return sum(saved.values())


def test_activation_count_matches_the_saved_tensors():
    shape = dataclasses.replace(SMALL, layers=4)
    saved = _saved_bytes(shape, rows=2, tokens=24, checkpointing=False)
    assert saved == pytest.approx(2 * 24 * 4 * activation_values_per_token(shape, False), rel=0.03)
    kept = _saved_bytes(shape, rows=2, tokens=24, checkpointing=True)  # the layer inputs, until backward
    assert kept < 0.2 * saved
    once = 2 * shape.hidden + 2 * shape.head_dim  # the final norm, RoPE's tables
    assert kept == pytest.approx(2 * 24 * 4 * (shape.layers * shape.hidden + once), rel=0.05)


def test_phase_peaks_add_what_each_phase_holds():
    parts = {"weights": 100, "adapter": 1, "gradients": 1, "optimizer": 2, "optimizer_step": 1, "reference": 0,
             "sampler_copy": 0, "kv_cache": 30, "sampling": 5, "activations": 20, "logprob_chunks": 8,
             "head_gradient": 0}
    assert phase_peaks(parts) == {"sampling": 103 + 35, "update": 103 + 1 + 20 + 8 + 1}
    assert phase_peaks(parts, cpu=True) == {"sampling": 111 + 35, "update": 111 + 1 + 20 + 1}


def test_full_fine_tuning_in_float32_adamw_needs_about_20_gb_before_activations():
    # the figure: 4 (weights) + 4 (gradients) + 8 (AdamW) bytes per parameter
    parts = step_parts(SHAPES["1b"], Setup(lora=False, weight_bytes=4))
    held = parts["weights"] + parts["gradients"] + parts["optimizer"]
    assert held == 16 * 1_235_814_400
    bf16_8bit = step_parts(SHAPES["1b"], Setup(lora=False, weight_bytes=2, optimizer="adamw_8bit"))
    assert bf16_8bit["weights"] + bf16_8bit["gradients"] + bf16_8bit["optimizer"] == 6 * 1_235_814_400


def test_training_tokens_count_a_shared_prompt_once():
    from groupwise.models.memory_model import training_tokens

    assert training_tokens(Setup(checkpointing=False, group=8, prompt_tokens=128, completion_tokens=32)) == 384
    assert training_tokens(Setup(checkpointing=True, group=8, prompt_tokens=128, completion_tokens=32)) == 1280
