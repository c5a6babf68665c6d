"""Shared fixtures: a seeded tiny-random model and tokenizer, and a small config for fast runs."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

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


class ScriptedEngine:
    """A `RolloutEngine` that answers from a script instead of a model: `reply(context, sample)` gives each row's
    text (context: the decoded prompt so far); its tokens, then EOS, cut at max_new_tokens; log-prob -0.5 each."""

    def __init__(self, tokenizer, reply) -> None:
        self.tokenizer, self.reply = tokenizer, reply

    def load_weights(self, policy) -> None:
        """Nothing to load: the script is the policy."""

    def generate(self, prompt_ids, params):
        from groupwise.rollout.completions import completions_from_tokens, pad_columns

        rows = []
        for ids in prompt_ids:
            context = self.tokenizer.decode(ids)
            for sample in range(params.group_size):
                tokens = self.tokenizer(self.reply(context, sample), add_special_tokens=False).input_ids
                rows.append(torch.tensor((tokens + [params.eos_id])[: params.max_new_tokens])[None])
        width = max(row.shape[1] for row in rows)
        tokens = torch.cat([pad_columns(row, width, params.pad_id, False) for row in rows])
        return completions_from_tokens(tokens, torch.full(tokens.shape, -0.5), params.eos_id, params.pad_id)


@pytest.fixture
def scripted_engine():
    return ScriptedEngine


LOWBIT = Path(__file__).parents[1] / ".venv" / "lowbit"  # setup.sh --dev installs torchao here


@pytest.fixture
def torchao():
    """torchao, for the 8-bit optimizer. `setup.sh --dev` installs it off the venv's path, in .venv/lowbit:
    transformers imports torchao in every process where it can find it (~1.5 s each, times every test process);
    here it joins this process's path only. Its optimizer step runs eagerly within the test (torch.compile of it
    took ~13 s of a tiny test, more on a cold cache; the operations are the same)."""
    if importlib.util.find_spec("torchao") is None and LOWBIT.is_dir() and str(LOWBIT) not in sys.path:
        sys.path.insert(0, str(LOWBIT))
    module = pytest.importorskip("torchao")
    torch.compiler.set_stance("force_eager")
    yield module
    torch.compiler.set_stance("default")
