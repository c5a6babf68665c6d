"""Whether bfloat16 arithmetic is fast on a device, and the autocast context the training passes run under."""

from __future__ import annotations

import contextlib
import functools
from pathlib import Path

import torch

BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")


@functools.cache
def cpu_has_fast_bf16() -> bool:
    """True on CPUs with AVX512-BF16 or AMX, where bf16 matrix products run several times faster than fp32."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return any(flag in flags for flag in BF16_CPU_FLAGS)


def fast_bf16(device: torch.device) -> bool:
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return device.type == "cpu" and cpu_has_fast_bf16()


MIN_BF16_HIDDEN = 256  # below this, casts and kernel set-up cost more than bf16 products save


def bf16_pays(model: torch.nn.Module, device: torch.device | None = None) -> bool:
    """bf16 is worth it for this model on `device` (default: where its weights are): fast bf16 units and matrices
    large enough to use them."""
    device = device or next(model.parameters()).device
    hidden = getattr(getattr(model, "config", None), "hidden_size", 0)
    return fast_bf16(device) and hidden >= MIN_BF16_HIDDEN


def resolve_bf16(setting: str | bool, model: torch.nn.Module, device: torch.device | None = None) -> bool:
    """'auto' means bf16 where it pays for this model on `device` (see `bf16_pays`); true/false force it."""
    if setting == "auto":
        return bf16_pays(model, device)
    return bool(setting)


def slow_bf16_warning(model_dtype: str, train_bf16: str | bool, device: torch.device) -> str | None:
    """A warning when bf16 training is asked for on a CPU without fast bf16 units, where the backward's matrix
    products fall back to a generic kernel (0.3 against 150 GFLOP/s float32, measured on a 2-core AMD EPYC)."""
    if device.type != "cpu" or cpu_has_fast_bf16() or (model_dtype != "bfloat16" and train_bf16 is not True):
        return None
    asked = "model.dtype bfloat16" if model_dtype == "bfloat16" else "train.bf16 true"
    return (f"{asked} on a CPU without AVX512-BF16 or AMX: bf16 training runs up to 100x slower than float32 here; "
            "set model.dtype: auto and train.bf16: auto for float32")


def autocast(device: torch.device, enabled: bool) -> contextlib.AbstractContextManager:
    """bf16 autocast for the forward passes: fp32 master weights and gradients, bf16 matrix products."""
    if not enabled:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
