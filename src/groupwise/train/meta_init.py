"""FSDP2 from the meta device: the model is sharded before its weights exist, so only rank 0, which loads it,
ever holds it whole.

Rank 0 loads the model as one process does, but in CPU memory, and hands every rank the tokenizer and a
`Blueprint` (configuration, generation settings, dtype, buffers). Every rank, rank 0 included, builds that
architecture on the meta device, shards it (`shard_model`), gives its shards storage (`to_empty`) and receives their
values from rank 0 one whole tensor at a time (`set_model_state_dict` with `broadcast_from_rank0`); then rank 0
drops its whole copy. So rank 0 holds the whole model plus its shards while it loads, and every other rank its
shards plus the one whole tensor in flight (the largest: the embedding).

The buffers travel in the blueprint: a non-persistent buffer (RoPE's `inv_freq`) is in no state dict, and
`to_empty` leaves it uninitialised. The reference model (beta > 0) is built the same way and filled from the
policy's shards, each rank copying its own (`sharded_copy`).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict, set_model_state_dict
from transformers import (
    AutoModelForCausalLM,
    GenerationConfig,
    PretrainedConfig,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from groupwise.config.schema import Config
from groupwise.errors import GroupwiseError
from groupwise.models.load import load_configured_model, resolve_device
from groupwise.models.precision import resolve_bf16
from groupwise.runtime.distributed import run_on_main
from groupwise.train.fsdp import check_sharded_engine, fsdp_training, shard_model

Loader = Callable[[], tuple[PreTrainedModel, PreTrainedTokenizerBase]]


@dataclass
class Blueprint:
    """What builds a model's architecture without its weights, and what the build must come out as."""

    config: PretrainedConfig
    generation_config: GenerationConfig | None
    dtype: torch.dtype
    buffers: dict[str, torch.Tensor]  # every buffer, whole: FSDP2 shards parameters only
    parameters: dict[str, tuple[tuple[int, ...], torch.dtype]]  # whole shape and dtype; a tied weight once


def blueprint_of(model: PreTrainedModel) -> Blueprint:
    """`model`'s blueprint (a sharded model's too: its parameters' shapes are the whole ones)."""
    return Blueprint(copy.deepcopy(model.config), copy.deepcopy(model.generation_config), model.dtype,
                     {name: b.detach().clone() for name, b in model.named_buffers()},
                     {name: (tuple(p.shape), p.dtype) for name, p in model.named_parameters()})


def build_on_meta(blueprint: Blueprint) -> PreTrainedModel:
    """The blueprint's architecture on the meta device: every parameter and buffer without storage."""
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(copy.deepcopy(blueprint.config), dtype=blueprint.dtype)
    model.generation_config = copy.deepcopy(blueprint.generation_config)
    built, wanted = {name: (tuple(p.shape), p.dtype) for name, p in model.named_parameters()}, blueprint.parameters
    if built != wanted:
        differ = sorted(name for name in built.keys() | wanted.keys() if built.get(name) != wanted.get(name))
        raise GroupwiseError(f"{type(model).__name__} built from its configuration differs from the loaded model in "
                             f"{', '.join(differ[:3])}, so it cannot be sharded from the meta device",
                             "train it with LoRA (lora.enabled: true) or on one process")
    return model


def set_buffers(model: torch.nn.Module, buffers: dict[str, torch.Tensor], device: torch.device) -> None:
    """Give `model` these buffers (copies on `device`), each keeping its persistence."""
    for name, value in buffers.items():
        owner, _, leaf = name.rpartition(".")
        setattr(model.get_submodule(owner), leaf, value.to(device, copy=True))


# rank 0's whole weights, each sent to every rank, which keeps its shard; a tied LM head comes once, as its embedding
FROM_RANK0 = StateDictOptions(full_state_dict=True, broadcast_from_rank0=True, strict=False)


def materialise(model: torch.nn.Module, blueprint: Blueprint, device: torch.device, state: dict[str, torch.Tensor],
                options: StateDictOptions | None = None) -> None:
    """Storage for the shards of `model` (built on the meta device) on `device`, filled from `state` and the
    blueprint's buffers."""
    model.to_empty(device=device)
    set_model_state_dict(model, state, options=options)
    set_buffers(model, blueprint.buffers, device)


def load_sharded_model(cfg: Config, load: Loader | None = None) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """The model sharded by FSDP2 from the meta device and the tokenizer, on every rank: rank 0 runs `load`
    (default: the configured model, in CPU memory) and hands each rank its shards."""
    check_sharded_engine(cfg)
    device = resolve_device(cfg.model.device)
    loaded: list[PreTrainedModel] = []

    def on_rank0() -> tuple[Blueprint, PreTrainedTokenizerBase, bool]:
        model, tokenizer = load() if load is not None else load_configured_model(cfg, on_cpu=True)
        loaded.append(model)
        return blueprint_of(model), tokenizer, resolve_bf16(cfg.train.bf16, model, device)

    blueprint, tokenizer, bf16 = run_on_main(on_rank0)  # every rank shards with rank 0's precision
    model = shard_model(build_on_meta(blueprint), bf16)
    whole = {name: p.detach() for name, p in loaded.pop().named_parameters()} if loaded else {}
    materialise(model, blueprint, device, whole, FROM_RANK0)  # the other ranks pass an empty dict
    return model, tokenizer  # rank 0's whole copy is dropped with `whole`


def load_training_model(cfg: Config) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """The model and tokenizer training starts from: sharded from the meta device under FSDP2, else loaded whole."""
    return load_sharded_model(cfg) if fsdp_training(cfg) else load_configured_model(cfg)


def sharded_copy(model: torch.nn.Module, bf16: bool) -> torch.nn.Module:
    """A second sharded model with `model`'s weights (the frozen reference), each rank copying its own shards."""
    blueprint = blueprint_of(model)
    twin = shard_model(build_on_meta(blueprint), bf16)
    state = get_model_state_dict(model)  # sharded: this rank's shards, copied into the twin's, no gather
    materialise(twin, blueprint, next(model.parameters()).device, state)
    return twin
