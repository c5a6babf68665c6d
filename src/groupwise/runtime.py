"""Process-wide settings for fast CPU training: the thread count, and an allocator that keeps freed memory."""

from __future__ import annotations

import ctypes
import functools
import platform

import torch

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters (malloc.h)
KEEP_BYTES = 1 << 30  # blocks up to 1 GiB are served from the heap and kept there once freed


@functools.cache
def keep_freed_memory() -> bool:
    """Ask glibc to keep freed blocks for reuse instead of handing them back to the kernel.

    By default every block over 32 MiB is a fresh mmap, so each [chunk, vocab] logits buffer or activation of
    a training step is page-faulted in again: on a 2-core machine that made copying a bf16 tensor to float32
    six times slower than the copy itself. Peak memory is unchanged: what is kept is reused by the next step.
    Returns whether the setting took (False on other C libraries, e.g. macOS or musl).
    """
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    return bool(libc.mallopt(M_MMAP_THRESHOLD, KEEP_BYTES)) and bool(libc.mallopt(M_TRIM_THRESHOLD, 2 * KEEP_BYTES))


def configure_runtime(threads: int | None, device: torch.device) -> None:
    """Before a training run: torch's CPU threads (None: torch's default), and `keep_freed_memory` on CPU."""
    if threads:
        torch.set_num_threads(threads)
    if device.type == "cpu":
        keep_freed_memory()
