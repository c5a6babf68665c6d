"""The one-process pieces of FSDP2 (train/fsdp.py); the sharded runs are in test_distributed.py."""

from __future__ import annotations

import torch

import groupwise.train.fsdp as fsdp
from groupwise.runtime.distributed import full_tensor
from groupwise.train.batch import micro_batch_logprobs


def test_decoder_layers_are_the_classes_the_model_names_unsplittable(tiny):
    model, _ = tiny
    layers = fsdp.decoder_layers(model)
    assert layers == list(model.model.layers) and len(layers) == 2


def test_lockstep_pads_to_the_largest_count_of_any_rank_only_when_sharded(monkeypatch):
    chunks = ["a", "b"]
    assert fsdp.lockstep(chunks, sharded=False) == ["a", "b"]
    monkeypatch.setattr(fsdp, "all_max", lambda value: 4)  # another rank holds four micro-batches
    assert fsdp.lockstep(chunks, sharded=True) == ["a", "b", None, None]
    assert fsdp.lockstep([], sharded=True) == [None] * 4


def test_an_idle_pass_runs_the_model_and_adds_a_zero_gradient(tiny):
    model, _ = tiny
    logp, entropy = micro_batch_logprobs(model, fsdp.IDLE, chunk=16, temperature=1.0)
    assert logp.shape == entropy.shape == (1, 1) and torch.isfinite(logp).all()
    (logp.sum() * 0).backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and not g.any() for g in grads)


def test_an_unsharded_model_runs_its_function_directly(tiny):
    model, _ = tiny
    assert not fsdp.is_sharded(model)
    assert fsdp.sharded_forward(model, lambda m, x: (m, x), 3) == (model, 3)
    ids = torch.tensor([[3, 1, 4, 1]])

    def last_logits(m, x, *, scale):
        return m(x).logits[:, -1] * scale

    out = fsdp.sharded_forward(model, last_logits, ids, scale=2.0)
    assert torch.equal(out, model(ids).logits[:, -1] * 2.0) and out.requires_grad  # arguments and graph kept
    with torch.no_grad():
        assert not fsdp.sharded_forward(model, last_logits, ids, scale=1.0).requires_grad
    value = torch.ones(2)
    assert full_tensor(value) is value
