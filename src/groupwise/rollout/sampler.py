"""One way to sample completions for training and evaluation alike: the fast engine or plain `generate`."""

from __future__ import annotations

import torch
from torch.distributed.tensor import DTensor
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from groupwise.config.schema import RolloutConfig
from groupwise.models.precision import bf16_pays
from groupwise.rollout.engine import GenerationEngine
from groupwise.rollout.generate import Rollout, generate_group_rollouts


class Sampler:
    """Samples from `model` as configured by `rollout`; call `refresh()` after the model's weights change."""

    def __init__(self, model: PreTrainedModel, rollout: RolloutConfig) -> None:
        self.model, self.rollout = model, rollout
        self.engine = None
        if rollout.engine == "fast":
            dtype = rollout.dtype if rollout.dtype != "auto" else (
                "bfloat16" if bf16_pays(model) else "float32")
            first = next(model.parameters())
            shared = rollout.weights == "shared" or (rollout.weights == "auto" and first.device.type != "cpu")
            shared = shared and not isinstance(first, DTensor)  # sharded (FSDP2): decode from a gathered copy
            self.engine = GenerationEngine(model, getattr(torch, dtype), shared=shared)

    def refresh(self) -> None:
        if self.engine is not None:
            self.engine.sync(self.model)

    def __call__(self, tokenizer: PreTrainedTokenizerBase, texts: list[str], *, group_size: int,
                 greedy: bool = False, temperature: float | None = None, top_p: float | None = None,
                 keys: list[int] | None = None) -> Rollout:
        """`keys`: one random-stream key per text (rollout/streams.py); None draws them from torch's generator."""
        r = self.rollout
        sampling = {"max_new_tokens": r.max_new_tokens, "greedy": greedy, "keys": keys,
                    "temperature": r.temperature if temperature is None else temperature,
                    "top_p": r.top_p if top_p is None else top_p}
        if self.engine is None:
            return generate_group_rollouts(self.model, tokenizer, texts, group_size=group_size,
                                           batch_size=r.batch_size, **sampling)
        return self.engine.rollouts(tokenizer, texts, group_size=group_size, **sampling)


def as_sampler(model: PreTrainedModel | Sampler, rollout: RolloutConfig) -> Sampler:
    """A sampler over `model`, built once per evaluation (the fast engine copies the weights)."""
    return model if isinstance(model, Sampler) else Sampler(model, rollout)
