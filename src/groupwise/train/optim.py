"""AdamW with linear warm-up, then a constant or cosine schedule over the run's steps."""

from __future__ import annotations

import math

import torch

from groupwise.config.schema import TrainConfig


def lr_factor(step: int, warmup: int, total: int, schedule: str) -> float:
    """Multiplier of the base learning rate after `step` scheduler steps (linear warm-up, then flat or cosine)."""
    if warmup and step < warmup:
        return (step + 1) / warmup
    if schedule == "constant":
        return 1.0
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def build_optimizer(params: list[torch.nn.Parameter], train: TrainConfig
                    ) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    optimizer = torch.optim.AdamW(params, lr=train.learning_rate, weight_decay=train.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(step, train.warmup_steps, train.steps, train.schedule))
    return optimizer, scheduler
