"""Peak memory of this process, as logged each step: the largest of any rank (every rank joins the reduction)."""

from __future__ import annotations

import resource

import torch

from groupwise.runtime.distributed import all_max


def peak_memory() -> dict[str, float]:
    """`memory/peak_rss_mb`: the resident set's high-water mark; `memory/peak_cuda_mb`: torch's CUDA allocations.

    Both are the maximum over ranks: the memory one process of the job needs."""
    out = {"memory/peak_rss_mb": all_max(round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1))}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        out["memory/peak_cuda_mb"] = all_max(round(torch.cuda.max_memory_allocated() / 2**20, 1))
    return out
