"""The optimizer (AdamW, or torchao's 8-bit AdamW), with linear warm-up, then a constant or cosine schedule."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch.distributed.tensor import DTensor

from groupwise.config.schema import TrainConfig
from groupwise.errors import GroupwiseError
from groupwise.train.offload import OffloadedOptimizer, needs_master_copy

TORCHAO_INSTALL = "pip install torchao==0.18.0 (or: bash scripts/setup.sh --lowbit)"


def lr_factor(step: int, warmup: int, total: int, schedule: str) -> float:
    """Multiplier of the base learning rate after `step` scheduler steps (linear warm-up, then flat or cosine)."""
    if warmup and step < warmup:
        return (step + 1) / warmup
    if schedule == "constant":
        return 1.0
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def adamw_8bit(params: list[torch.nn.Parameter], train: TrainConfig) -> torch.optim.Optimizer:
    """torchao's AdamW8bit: both moments in 8 bits per value (block-wise scales; Dettmers et al. 2022), bf16
    weights updated with stochastic rounding so that updates below bf16's precision are kept on average."""
    try:
        from torchao.optim import AdamW8bit
    except ImportError as err:
        raise GroupwiseError("train.optimizer adamw_8bit needs torchao, which is not installed",
                             f"run: {TORCHAO_INSTALL}, or set train.optimizer: adamw") from err
    bf16 = any(p.dtype == torch.bfloat16 for p in params)
    return AdamW8bit(params, lr=train.learning_rate, weight_decay=train.weight_decay, bf16_stochastic_round=bf16)


def base_optimizer(train: TrainConfig) -> Callable[[list[torch.nn.Parameter]], torch.optim.Optimizer]:
    """The optimizer `train.optimizer` names, as a builder over a parameter list."""
    if train.optimizer == "adamw_8bit":
        return lambda params: adamw_8bit(params, train)
    return lambda params: torch.optim.AdamW(params, lr=train.learning_rate, weight_decay=train.weight_decay)


def build_optimizer(params: list[torch.nn.Parameter], train: TrainConfig
                    ) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    """`train.optimizer` over `params`; with `train.optimizer_offload`, stepping float32 copies in CPU memory
    (a no-op for float32 weights already on the CPU)."""
    build = base_optimizer(train)
    sharded = [p for p in params if isinstance(p, DTensor)]
    if train.optimizer == "adamw_8bit" and any(p.dtype == torch.bfloat16 for p in sharded):
        raise GroupwiseError("train.optimizer adamw_8bit cannot step bfloat16 weights sharded by FSDP2: torchao "
                             "0.18's stochastic rounding fails on a sharded 8-bit state (aten.view.dtype)",
                             "set model.dtype: float32 (8-bit AdamW works on sharded float32 weights), or "
                             "train.optimizer: adamw")
    if train.optimizer_offload and sharded:
        raise GroupwiseError("train.optimizer_offload does not support FSDP2 (full fine-tuning on several "
                             "processes) yet", "set train.optimizer_offload: false, or train on one process")
    offload = train.optimizer_offload and needs_master_copy(params)
    optimizer = OffloadedOptimizer(params, build) if offload else build(params)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(step, train.warmup_steps, train.steps, train.schedule))
    return optimizer, scheduler
