"""`train.optimizer_offload`: the optimizer steps float32 master copies of the weights kept in CPU memory.

The device then holds only the weights and their gradients (4 bytes per parameter in bf16, 8 in float32); the
master copies, a float32 gradient buffer and AdamW's two moments (16 bytes per parameter) sit in CPU memory,
where the step runs (no faster than the CPU's AdamW; the copies cross PCIe twice a step). Each step copies
the (already clipped) gradients to the CPU, steps there, and copies the updated weights back, rounded to the
weights' dtype. With bf16 weights this is "bf16 weights, float32 master weights and optimizer state".
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

CPU = torch.device("cpu")


def needs_master_copy(params: list[torch.nn.Parameter]) -> bool:
    """Whether offloading changes anything: weights off the CPU, or not in float32 (float32 weights on the CPU
    are their own master copy)."""
    return any(p.device != CPU or p.dtype != torch.float32 for p in params)


class OffloadedOptimizer(torch.optim.Optimizer):
    """`build(masters)` stepping float32 CPU copies of `params`; to the outside (schedulers, checkpoints) it is
    the inner optimizer. Like torchao's CPUOffloadOptimizer it skips `Optimizer.__init__`: the inner optimizer
    holds the state and the parameter groups."""

    def __init__(self, params: list[torch.nn.Parameter],
                 build: Callable[[list[torch.nn.Parameter]], torch.optim.Optimizer]) -> None:
        self.params = list(params)
        self.masters = [torch.nn.Parameter(master_copy(p)) for p in self.params]
        self.grads = [master_copy(p).zero_() for p in self.params]  # gradient buffers, reused every step
        self.inner = build(self.masters)

    @property
    def param_groups(self) -> list[dict[str, Any]]:  # type: ignore[override]
        return self.inner.param_groups

    @property
    def state(self):  # type: ignore[override]
        return self.inner.state

    @property
    def defaults(self) -> dict[str, Any]:  # type: ignore[override]
        return self.inner.defaults

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.params:
            if set_to_none:
                p.grad = None
            elif p.grad is not None:
                p.grad.zero_()

    @torch.no_grad()
    def step(self, closure=None):  # type: ignore[override]
        """Gradients to the CPU, the inner step on the masters, the updated weights back to the device."""
        for p, master, grad in zip(self.params, self.masters, self.grads, strict=True):
            master.grad = None if p.grad is None else grad.copy_(p.grad)  # no gradient: the step skips it
        self.inner.step()
        for p, master in zip(self.params, self.masters, strict=True):
            p.copy_(master, non_blocking=True)
        return None

    def state_dict(self) -> dict[str, Any]:  # type: ignore[override]
        """The inner optimizer's state, and the masters: bf16 weights alone would lose their low bits."""
        return self.inner.state_dict() | {"masters": [master.detach() for master in self.masters]}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:  # type: ignore[override]
        """The inner optimizer's state and the masters; without saved masters (a checkpoint of a run without
        offload), the masters start again from the weights, restored just before."""
        state_dict = dict(state_dict)
        masters = state_dict.pop("masters", None) or [p.detach() for p in self.params]
        self.inner.load_state_dict(state_dict)
        with torch.no_grad():
            for master, saved in zip(self.masters, masters, strict=True):
                master.copy_(saved)


def master_copy(p: torch.Tensor) -> torch.Tensor:
    """A float32 copy of `p` in CPU memory, pinned when `p` is on CUDA (asynchronous copies both ways)."""
    master = p.detach().to(CPU, torch.float32, copy=True)
    return master.pin_memory() if p.is_cuda else master
