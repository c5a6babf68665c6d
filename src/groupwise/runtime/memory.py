"""Memory of this process: the peak logged each step (the largest of any rank; every rank joins the reduction),
and byte counts of tensors (each storage once) for tests and benchmarks/memory.py."""

from __future__ import annotations

import gc
import resource
from collections.abc import Iterable
from pathlib import Path

import torch

from groupwise.runtime.distributed import all_max


def peak_memory() -> dict[str, float]:
    """`memory/peak_rss_mb`: the resident set's high-water mark; `memory/peak_cuda_mb`: torch's CUDA allocations.

    Both are the maximum over ranks: the memory one process of the job needs."""
    out = {"memory/peak_rss_mb": all_max(round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1))}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        out["memory/peak_cuda_mb"] = all_max(round(torch.cuda.max_memory_allocated() / 2**20, 1))
    return out


def tensor_bytes(tensors: Iterable[torch.Tensor]) -> int:
    """Bytes of the storages behind `tensors`, each storage counted once (views and tied weights share one)."""
    storages: dict[tuple[str, int], int] = {}
    for t in plain_tensors(tensors):
        if t.device.type == "meta" or t.is_sparse:
            continue
        try:
            storage = t.untyped_storage()
            pointer = storage.data_ptr()
        except (RuntimeError, NotImplementedError):  # a fake tensor torch.compile traced with: no memory
            continue
        if pointer:
            storages[(str(t.device), pointer)] = storage.nbytes()
    return sum(storages.values())


def plain_tensors(tensors: Iterable[torch.Tensor]) -> Iterable[torch.Tensor]:
    """`tensors`, with a wrapper subclass (torchao's 8-bit optimizer state; a DTensor, whose local shard this
    process holds) replaced by the tensors it holds."""
    for t in tensors:
        if hasattr(t, "__tensor_flatten__"):
            names, _ = t.__tensor_flatten__()
            inner = (getattr(t, name) for name in names)  # a DTensor also names its device mesh
            yield from plain_tensors(value for value in inner if isinstance(value, torch.Tensor))
        else:
            yield t


def live_tensor_bytes() -> int:
    """Bytes of every tensor storage Python can reach (after a collection): what the process holds in tensors,
    without the allocator's free blocks. Tensors held only by C++ (an autograd graph's saved activations) are
    not seen; they live only while their graph does."""
    gc.collect()
    return tensor_bytes(obj for obj in gc.get_objects() if issubclass(type(obj), torch.Tensor))


def current_rss_bytes() -> int:
    """The resident set now (VmRSS of /proc/self/status), in bytes; 0 where /proc is missing."""
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:
        return 0
    kb = next((line.split()[1] for line in status.splitlines() if line.startswith("VmRSS:")), "0")
    return int(kb) * 1024
