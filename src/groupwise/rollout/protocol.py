"""The rollout engine protocol: every way of sampling (fast, hf, and engines to come) is one of these.

An engine takes prompts as token ids and returns `Completions`: G sampled continuations per prompt, the
log-prob the sampler gave each token (under the temperature/top-p distribution it drew from) and whether each
ended with EOS. `load_weights(policy)` refreshes it from the policy after an optimizer step. Nothing here
knows of training: `Sampler` (sampler.py) tokenizes, calls an engine and builds the trainer's `Rollout`.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch

from groupwise.errors import GroupwiseError
from groupwise.rollout.completions import Completions, SamplingParams


class EngineFailure(GroupwiseError):
    """An engine that stopped working mid-run (a weight sync failed or timed out, a server died): the loop saves
    a checkpoint of the last finished step before it stops with this error's line."""


@runtime_checkable
class RolloutEngine(Protocol):
    def generate(self, prompt_ids: list[list[int]], params: SamplingParams) -> Completions:
        """`params.group_size` completions per prompt; row p*G + i is sample i of prompt p."""
        ...

    def load_weights(self, policy: torch.nn.Module) -> None:
        """Take the policy's current weights (its LoRA deltas included): called after each optimizer step."""
        ...
