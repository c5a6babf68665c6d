"""Shared fixtures: a seeded tiny-random model and tokenizer, and a small config for fast runs."""

from __future__ import annotations

import pytest
import torch

from groupwise.config.load import build_config
from groupwise.models.tiny import build_tiny_random

torch.set_num_threads(2)

TINY_OVERRIDES = [
    "model.name=tiny-random", "rollout.prompts_per_step=4", "rollout.group_size=4", "rollout.max_new_tokens=8",
    "train.micro_batch_size=8", "train.steps=2", "eval.before_after=false", "log.progress=false",
    "data.train_size=64", "data.heldout_size=16",
    # bf16 only pays on large matrices; tiny-model tests run in float32 (the bf16 paths have their own tests)
    "model.dtype=float32", "train.bf16=false", "rollout.dtype=float32",
]


@pytest.fixture
def tiny():
    return build_tiny_random(seed=0)


@pytest.fixture
def tiny_config():
    def make(*extra: str):
        return build_config(None, TINY_OVERRIDES + list(extra))

    return make


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread: tiny models gain nothing from more, and shared CPUs make extra threads spin."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
