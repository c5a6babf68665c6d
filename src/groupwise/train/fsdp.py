"""FSDP2 for full fine-tuning under torchrun: weights, gradients and optimizer state sharded across ranks.

`shard_model` applies `torch.distributed.fsdp.fully_shard` to every decoder layer and then to the root (the
embedding, final norm and LM head form the root's unit); `meta_init.py` applies it to a model built on the meta
device and fills the shards from rank 0's load. The rest of the step stays the one-process step; the lines that
differ are named here:

- `sharded_forward`: the log-prob code calls the decoder body and reads the LM head weight directly, not through
  the model's `forward`; it runs as a registered FSDP forward method so that the root's weights are gathered.
- `lockstep`: FSDP's all-gathers are collectives, so every rank must run the same number of passes. A rank with
  fewer micro-batches (dynamic sampling can leave it with none) runs idle passes on `IDLE`, a one-token batch
  whose loss weight is zero.
- Gradients are reduce-scattered as a SUM: the loss is already normalised by the whole batch's token/sequence
  count, so the sum over ranks is the one-process gradient (and gloo has no PREMUL_SUM/AVG for FSDP's default).
- `full_state`: the whole weights, gathered once (the final save); the rollout engine gathers its copy once per
  step (`FastEngine.load_weights` calls `runtime.distributed.full_tensor`), never once per token.
- `save_sharded`/`load_sharded`: torch.distributed.checkpoint (DCP), one file per rank plus `.metadata`; it loads
  on any world size, one process included (DCP reshards on load).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
    set_state_dict,
)
from torch.distributed.fsdp import FSDPModule, MixedPrecisionPolicy, fully_shard, register_fsdp_forward_method

from groupwise.config.schema import Config
from groupwise.errors import GroupwiseError
from groupwise.runtime.distributed import all_max, world_size
from groupwise.train.batch import MicroBatch

FORWARD_METHOD = "groupwise_forward"  # the registered FSDP forward method `sharded_forward` calls


def fsdp_training(cfg: Config) -> bool:
    """Whether this run shards its model with FSDP2: full fine-tuning on more than one process."""
    return world_size() > 1 and not cfg.lora.enabled


def check_sharded_engine(cfg: Config) -> None:
    """The hf engine would gather the sharded weights for every token it decodes: refused under FSDP2."""
    if cfg.rollout.engine == "hf":
        raise GroupwiseError("rollout.engine=hf with full fine-tuning on several processes would gather the "
                             "sharded weights for every token", "use rollout.engine=fast (the default)")


def decoder_layers(model: torch.nn.Module) -> list[torch.nn.Module]:
    """The model's decoder layers: the classes Hugging Face names in `_no_split_modules`."""
    names = set(getattr(model, "_no_split_modules", None) or [])
    return [m for m in model.modules() if type(m).__name__ in names]


def shard_model(model: torch.nn.Module, bf16: bool) -> FSDPModule:
    """fully_shard each decoder layer, then the root; bf16 gathers and fp32 reductions when training in bf16."""
    layers = decoder_layers(model)
    if not layers:
        raise RuntimeError(f"{type(model).__name__} names no decoder layer class in _no_split_modules")
    policy = (MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32) if bf16
              else MixedPrecisionPolicy())
    for layer in layers:
        fully_shard(layer, mp_policy=policy)
    fully_shard(model, mp_policy=policy)
    for unit in [*layers, model]:
        unit.set_gradient_divide_factor(1.0)  # a SUM over ranks (see the module docstring)
        unit.set_force_sum_reduction_for_comms(True)
    model.groupwise_forward = _call.__get__(model)  # type: ignore[attr-defined]
    register_fsdp_forward_method(model, FORWARD_METHOD)
    return model  # type: ignore[return-value]


def _call(model: torch.nn.Module, fn, *args: Any, **kwargs: Any) -> Any:
    return fn(model, *args, **kwargs)


def is_sharded(model: torch.nn.Module) -> bool:
    return isinstance(model, FSDPModule)


def sharded_forward(model: torch.nn.Module, fn, *args: Any, **kwargs: Any) -> Any:
    """`fn(model, *args, **kwargs)`, as an FSDP forward of the root when `model` is sharded."""
    if not is_sharded(model):
        return fn(model, *args, **kwargs)
    out = getattr(model, FORWARD_METHOD)(fn, *args, **kwargs)
    if not torch.is_grad_enabled():
        model.reshard()  # the root keeps its gathered weights for a backward; a no-grad pass has none
    return out


IDLE = MicroBatch(rows=torch.zeros(1, dtype=torch.long), prompt_ids=torch.zeros(1, 1, dtype=torch.long),
                  prompt_mask=torch.ones(1, 1, dtype=torch.long), prompt_of_row=torch.zeros(1, dtype=torch.long),
                  completion_ids=torch.zeros(1, 1, dtype=torch.long),
                  completion_attention=torch.ones(1, 1, dtype=torch.long),
                  completion_mask=torch.zeros(1, 1, dtype=torch.long))


def lockstep(chunks: list[MicroBatch], sharded: bool) -> list[MicroBatch | None]:
    """`chunks`, padded with None (an idle pass on `IDLE`) to the largest count of any rank when sharded."""
    if not sharded:
        return list(chunks)
    return list(chunks) + [None] * (int(all_max(len(chunks))) - len(chunks))


def full_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Every weight, whole and on CPU, on rank 0 (an empty dict elsewhere); every rank must call it.

    A tied weight (the LM head sharing the embedding) appears once, under the name `named_parameters` gives it."""
    options = StateDictOptions(full_state_dict=True, cpu_offload=True)
    state = get_model_state_dict(model, options=options)
    named = {name for name, _ in model.named_parameters()} | {name for name, _ in model.named_buffers()}
    return {name: value for name, value in state.items() if name in named}


# ---- checkpoints (DCP) -----------------------------------------------------------------------------------


def save_sharded(folder: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> None:
    """Weights and optimizer state, each rank writing its own shards into `folder` (collective)."""
    weights, optim = get_state_dict(model, optimizer)
    dcp.save({"model": weights, "optimizer": optim}, checkpoint_id=folder)


def load_sharded(folder: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> None:
    """Load a DCP checkpoint into `model` (sharded or not, any world size) and its `optimizer`."""
    weights, optim = get_state_dict(model, optimizer)
    state = {"model": weights, "optimizer": optim}
    dcp.load(state, checkpoint_id=folder, no_dist=not dist.is_initialized())
    set_state_dict(model, optimizer, model_state_dict=state["model"], optim_state_dict=state["optimizer"])


def load_full(model: torch.nn.Module, optimizer: torch.optim.Optimizer, weights: dict[str, torch.Tensor],
              optim: dict[str, Any]) -> None:
    """A one-process checkpoint (whole weights; optimizer state keyed by parameter index) into a sharded model."""
    full = StateDictOptions(full_state_dict=True, strict=False)  # a tied LM head is saved once
    set_model_state_dict(model, weights, options=full)
    names = [name for name, p in model.named_parameters() if p.requires_grad]
    by_name = {"state": {names[i]: s for i, s in optim["state"].items()},
               "param_groups": [{**g, "params": [names[i] for i in g["params"]]} for g in optim["param_groups"]]}
    set_optimizer_state_dict(model, optimizer, by_name, options=StateDictOptions(full_state_dict=True))
