"""torch.distributed for groupwise: who this process is, and the named reductions the training step calls.

torchrun (or srun/a PyTorchJob running torchrun) sets RANK, WORLD_SIZE and LOCAL_RANK; `init_distributed` joins
the group with NCCL on CUDA and gloo on CPU. Without those variables nothing is initialised, and every function
here is the identity of one process: `all_sum(x) == x`, `shard(n) == range(n)`, `all_gather_objects(x) == [x]`.
Collectives time out after GROUPWISE_COLLECTIVE_TIMEOUT_S seconds (default 600), so a rank that died mid-step
ends the others with an error instead of a hang.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from datetime import timedelta
from typing import Any, TypeVar

import torch
import torch.distributed as dist

from groupwise.errors import GroupwiseError

TIMEOUT_ENV = "GROUPWISE_COLLECTIVE_TIMEOUT_S"
T = TypeVar("T")


def launched_by_torchrun() -> bool:
    """Whether torchrun's environment says this process is one of several."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and "RANK" in os.environ


def init_distributed(device: str = "auto") -> None:
    """Join the process group torchrun describes (idempotent; nothing to do on one process)."""
    if not launched_by_torchrun() or dist.is_initialized():
        return
    cuda = device != "cpu" and torch.cuda.is_available()
    if cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))  # "cuda" then means this rank's GPU
    timeout = timedelta(seconds=float(os.environ.get(TIMEOUT_ENV) or 600))
    dist.init_process_group("nccl" if cuda else "gloo", timeout=timeout)


def world_size() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


def rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def is_main() -> bool:
    """Rank 0 alone writes the run folder: logs, checkpoints, the final model, the summary."""
    return rank() == 0


def check_divisible(prompts_per_step: int) -> None:
    """Work is split by whole groups: every rank gets the same number of prompts per step."""
    size = world_size()
    if prompts_per_step % size:
        raise GroupwiseError(f"rollout.prompts_per_step={prompts_per_step} does not divide by the world size "
                             f"{size}", f"use a multiple of {size} prompts per step, or {size} processes that "
                             "divide it")


def shard(n: int) -> range:
    """This rank's contiguous share of n items (ranks 0..W-1 in order; sizes differ by at most one)."""
    size, me = world_size(), rank()
    return range(me * n // size, (me + 1) * n // size)


# ---- named reductions: the identity on one process -------------------------------------------------------


def all_gather_objects(value: T) -> list[T]:
    """Every rank's `value`, in rank order, on every rank (pickled; for small per-step data)."""
    if world_size() == 1:
        return [value]
    out: list[Any] = [None] * world_size()
    dist.all_gather_object(out, value)
    return out


def all_sum(value: float) -> float:
    """The sum over ranks, added in rank order so that every rank gets the same float."""
    return sum(all_gather_objects(value)) if world_size() > 1 else value


def all_max(value: float) -> float:
    return max(all_gather_objects(value)) if world_size() > 1 else value


def all_sum_dict(values: dict[str, float]) -> dict[str, float]:
    """Per-key sums over ranks; a key some rank lacks counts 0 there (a rank with no rows this step)."""
    if world_size() == 1:
        return values
    parts = all_gather_objects(values)
    keys = [k for part in parts for k in part]
    return {k: sum(part.get(k, 0.0) for part in parts) for k in dict.fromkeys(keys)}


def sum_gradients(params: Iterable[torch.nn.Parameter]) -> None:
    """All-reduce (sum) the trainable gradients in one flat buffer; a missing gradient counts as zeros.

    The loss is normalised by the whole batch's token/sequence count, so the sum is the one-process gradient."""
    if world_size() == 1:
        return
    params = list(params)
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    flat = torch.cat([p.grad.reshape(-1) for p in params])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    offset = 0
    for p in params:
        p.grad.copy_(flat[offset:offset + p.numel()].view_as(p.grad))
        offset += p.numel()


def run_on_main(fn: Callable[[], T]) -> T:
    """`fn()` on rank 0 only, its result (or its GroupwiseError, raised everywhere) handed to every rank."""
    if world_size() == 1:
        return fn()
    box: list[Any] = [None]
    if is_main():
        try:
            box[0] = ("ok", fn())
        except GroupwiseError as err:
            box[0] = ("error", (err.problem, err.fix))
    dist.broadcast_object_list(box, src=0)
    status, value = box[0]
    if status == "error":
        raise GroupwiseError(*value)
    return value


def barrier() -> None:
    if world_size() > 1:
        dist.barrier()
