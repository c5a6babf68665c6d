"""The rollout engines a config can name (`rollout.engine`), each a `RolloutEngine` (rollout/protocol.py).

Each name maps to a builder `build(model, rollout_config) -> RolloutEngine`; `Sampler` builds the one the config
names. A new engine (e.g. vLLM) is one more file here and one more entry in `ENGINES`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch.distributed.tensor import DTensor

from groupwise.config.schema import RolloutConfig
from groupwise.errors import GroupwiseError
from groupwise.models.precision import bf16_pays
from groupwise.rollout.engines.fast import FastEngine
from groupwise.rollout.engines.hf import HFEngine
from groupwise.rollout.engines.vllm import VLLMEngine
from groupwise.rollout.engines.vllm_server import VLLMServerEngine
from groupwise.rollout.protocol import RolloutEngine

EngineBuilder = Callable[[Any, RolloutConfig], RolloutEngine]


def build_engine(model: Any, rollout: RolloutConfig) -> RolloutEngine:
    """The engine `rollout.engine` names, sampling from `model`."""
    if rollout.engine not in ENGINES:
        raise GroupwiseError(f"unknown rollout.engine '{rollout.engine}'", f"use one of {', '.join(sorted(ENGINES))}")
    return ENGINES[rollout.engine](model, rollout)


def fast_engine(model: Any, rollout: RolloutConfig) -> FastEngine:
    """A copy of the policy in `rollout.dtype` (bf16 where it pays), or the policy's own modules on a GPU."""
    dtype = rollout.dtype if rollout.dtype != "auto" else ("bfloat16" if bf16_pays(model) else "float32")
    first = next(model.parameters())
    shared = rollout.weights == "shared" or (rollout.weights == "auto" and first.device.type != "cpu")
    shared = shared and not isinstance(first, DTensor)  # sharded (FSDP2): decode from a gathered copy
    return FastEngine(model, getattr(torch, dtype), shared=shared)


def hf_engine(model: Any, rollout: RolloutConfig) -> HFEngine:
    return HFEngine(model, rollout.batch_size)


ENGINES: dict[str, EngineBuilder] = {"fast": fast_engine, "hf": hf_engine, "vllm": VLLMEngine,
                                     "vllm_server": VLLMServerEngine}


def register_engine(name: str, build: EngineBuilder) -> None:
    """Make `rollout.engine: name` build its engine with `build(model, rollout_config) -> RolloutEngine`."""
    ENGINES[name] = build
