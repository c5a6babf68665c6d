"""torch.distributed for groupwise: who this process is, and the named reductions the training step calls.

torchrun (or srun/a PyTorchJob running torchrun) sets RANK, WORLD_SIZE and LOCAL_RANK; `init_distributed` joins
the group with NCCL on CUDA and gloo on CPU. Without those variables nothing is initialised, and every function
here is the identity of one process: `all_sum(x) == x`, `shard(n) == range(n)`, `all_gather_objects(x) == [x]`.
Collectives time out after GROUPWISE_COLLECTIVE_TIMEOUT_S seconds (default 600), so a rank that died mid-step
ends the others with an error instead of a hang.

Restarts (`torchrun --max-restarts K`): torchrun's agent keeps one store for every restart of the worker group,
so the keys the previous group wrote (each rank's gloo/NCCL address) are still there and the new group would
connect to dead processes (pytorch/pytorch#135712). A restarted group therefore meets under a key prefix of its
own, `groupwise/restart-N`.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from datetime import timedelta
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch.distributed.tensor import DTensor

from groupwise.errors import GroupwiseError

TIMEOUT_ENV = "GROUPWISE_COLLECTIVE_TIMEOUT_S"
T = TypeVar("T")
_thread = threading.local()  # .group: the process group this thread's object collectives use (None: the default)


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
    timeout = collective_timeout()
    backend = "nccl" if cuda else "gloo"
    store = restart_store(timeout)
    if store is None:
        dist.init_process_group(backend, timeout=timeout)  # env://: torchrun's MASTER_ADDR/MASTER_PORT store
    else:
        dist.init_process_group(backend, timeout=timeout, store=store, rank=int(os.environ["RANK"]),
                                world_size=int(os.environ["WORLD_SIZE"]))


def exit_process(code: int) -> None:
    """End the process with `code`. A process in a process group runs its atexit handlers, flushes its output and
    leaves without C++ static destruction: there, gloo's threads could be destroyed still joinable, and the
    process aborted after its work was done ("terminate called without an active exception": 1 run in ~6 of a
    2-process job whose reward fails, also seen on a finished run; destroy_process_group at exit did not help)."""
    if not dist.is_initialized():
        raise SystemExit(code)
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)


def collective_timeout() -> timedelta:
    """How long a collective may wait: GROUPWISE_COLLECTIVE_TIMEOUT_S seconds (default 600)."""
    return timedelta(seconds=float(os.environ.get(TIMEOUT_ENV) or 600))


def restart_store(timeout: timedelta) -> dist.Store | None:
    """After a torchrun restart, the agent's store under this restart's own prefix (None: torchrun's default).

    Only one agent (one node) counts restarts consistently; several nodes sharing the agent's store cannot
    agree on a prefix, so they need torchrun's own fresh store per restart (TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1).
    """
    restarts = int(os.environ.get("TORCHELASTIC_RESTART_COUNT") or 0)
    if not restarts or os.environ.get("TORCHELASTIC_USE_AGENT_STORE") != "True":
        return None
    if int(os.environ.get("GROUP_WORLD_SIZE") or 1) > 1:
        raise GroupwiseError("torchrun restarted the workers of a multi-node job, but its agents share one "
                             "store across restarts, so the new group cannot form (pytorch/pytorch#135712)",
                             "export TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1 on every node before torchrun")
    agent = dist.TCPStore(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), is_master=False,
                          timeout=timeout)
    return dist.PrefixStore(f"groupwise/restart-{restarts}", agent)


def side_group() -> dist.ProcessGroup | None:
    """A second process group (gloo) for a thread whose collectives run beside the main thread's (the rollout
    producer): collectives of two threads on one group would interleave. Every rank creates it, in the same order;
    None on one process."""
    if not dist.is_initialized():
        return None
    return dist.new_group(backend="gloo", timeout=collective_timeout())


@contextlib.contextmanager
def collectives_on(group: dist.ProcessGroup | None) -> Iterator[None]:
    """Within the block, this thread's object collectives (all_gather_objects and what uses it, run_on_main,
    barrier) run on `group`."""
    previous = _group()
    _thread.group = group
    try:
        yield
    finally:
        _thread.group = previous


def _group() -> dist.ProcessGroup | None:
    return getattr(_thread, "group", None)


def world_size() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


def rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def is_main() -> bool:
    """Rank 0 alone writes the run folder: logs, checkpoints, the final model, the summary."""
    return rank() == 0


def check_divisible(prompts_per_step: int, size: int | None = None) -> None:
    """Work is split by whole groups: every rank gets the same number of prompts per step (`size`: the world size
    to check for; default: this process group's)."""
    size = world_size() if size is None else size
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
    dist.all_gather_object(out, value, group=_group())
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
    dist.broadcast_object_list(box, src=0, group=_group())
    status, value = box[0]
    if status == "error":
        raise GroupwiseError(*value)
    return value


def on_every_rank(fn: Callable[..., T], *args: Any) -> T:
    """`fn(*args)` on every rank; if it raised on some rank, every rank stops with that rank's error in one line.

    For work whose failure can differ between ranks (scoring one shard: a reward that fails on one bad row):
    the ranks that did not fail would otherwise wait in their next collective until it times out. The failing
    rank raises its own exception (a bug keeps its traceback); the others a GroupwiseError (of the failing rank's
    subclass) naming it."""
    if world_size() == 1:
        return fn(*args)
    value, error, failure = None, None, None
    try:
        value = fn(*args)
    except GroupwiseError as err:
        error, failure = err, (err.problem, err.fix, type(err))
    except Exception as err:  # noqa: BLE001 - a bug: handed to every rank below, then raised with its traceback
        error, failure = err, (f"{type(err).__name__}: {err}", "its traceback is in that rank's log", GroupwiseError)
    for where, failed in enumerate(all_gather_objects(failure)):
        if failed is not None:
            if error is not None and not isinstance(error, GroupwiseError):
                raise error
            problem, fix, kind = failed
            raise kind(f"rank {where}: {problem}", fix)  # the same kind on every rank (e.g. an engine failure)
    return value


def barrier() -> None:
    if world_size() > 1:
        dist.barrier(group=_group())


def full_tensor(value: torch.Tensor) -> torch.Tensor:
    """The whole tensor of a DTensor (a collective), or `value` itself."""
    return value.full_tensor() if isinstance(value, DTensor) else value
