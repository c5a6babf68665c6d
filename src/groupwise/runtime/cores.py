"""The CPU cores this process may run on."""

from __future__ import annotations

import os


def available_cores() -> int:
    """Cores this process may run on (a container's CPU set), else the machine's count."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def process_cores() -> int:
    """This process's share of the cores: all of them, or under torchrun an equal share per local rank."""
    return max(1, available_cores() // int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1))


def split_cores(cores: int) -> tuple[int, int]:
    """(producer, trainer) threads that share `cores`: half each, the odd one to the trainer, at least 1 each."""
    producer = max(1, cores // 2)
    return producer, max(1, cores - producer)
