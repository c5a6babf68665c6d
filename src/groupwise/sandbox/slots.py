"""Sandbox slots shared by every groupwise process on a host: one ``flock``-ed lock file per slot.

A slot (its index, its uid when we are root, its per-slot caches) belongs to one thread of one process at a
time. Threads of a process queue on a condition; processes skip slots whose lock another holds. The lock
file records the last holder's pid, so a slot taken over from another process is cleaned of that process's
leftovers first (its uid's processes and its cgroup), which are then ours to kill.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)
_RETRY_S = 0.02  # how often to look again when every free slot is held by other processes


@dataclass(frozen=True)
class Slot:
    """A sandbox slot: its index (for per-slot caches) and the uid/gid its programs run as."""

    index: int
    uid: int
    gid: int
    dedicated: bool  # True: uid is used by this slot only (we are root), so leftovers can be killed by uid


def lock_dir() -> Path:
    """Where the slot lock files live: one dir per host (root) or per user."""
    if os.geteuid() == 0:
        return Path("/run/groupwise/sandbox-slots")
    base = os.environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir()
    return Path(base) / f"groupwise-sandbox-slots-{os.getuid()}"


class SlotPool:
    """Hands out the lowest slot free in this process and not locked by another one."""

    def __init__(self, size: int, uid_base: int, on_takeover: Callable[[Slot], None]) -> None:
        self.size = size
        self.uid_base = uid_base
        self._on_takeover = on_takeover
        self._free = list(range(size))
        self._cond = threading.Condition()
        self._dir: Path | None = None
        self._dir_ready = False

    def _slot(self, index: int) -> Slot:
        if os.geteuid() == 0:
            return Slot(index, self.uid_base + index, self.uid_base + index, True)
        return Slot(index, os.getuid(), os.getgid(), False)

    def _lock_dir(self) -> Path | None:
        if not self._dir_ready:
            self._dir_ready = True
            path = lock_dir()
            try:
                path.mkdir(parents=True, exist_ok=True, mode=0o700)
                self._dir = path
            except OSError as err:
                log.warning("sandbox: cannot create the slot lock dir %s (%s); slots are unique within this "
                            "process only, so run one groupwise process per host", path, err)
        return self._dir

    def _try_lock(self, index: int) -> int | None:
        """The locked file's fd, or None when another process holds the slot; -1 without a lock dir."""
        folder = self._lock_dir()
        if folder is None:
            return -1
        fd = os.open(folder / f"slot-{index}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return None
        return fd

    def _claim(self) -> tuple[int, int]:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: bool(self._free))
                for index in sorted(self._free):
                    fd = self._try_lock(index)
                    if fd is not None:
                        self._free.remove(index)
                        return index, fd
            time.sleep(_RETRY_S)

    @contextmanager
    def take(self) -> Iterator[Slot]:
        index, fd = self._claim()
        try:
            slot = self._slot(index)
            if fd >= 0 and _swap_holder(fd) != os.getpid():
                self._on_takeover(slot)
            yield slot
        finally:
            if fd >= 0:
                os.close(fd)  # releases the flock
            with self._cond:
                self._free.append(index)
                self._cond.notify()


def _swap_holder(fd: int) -> int:
    """Record our pid as the slot's holder (written only when it changes); return the previous holder's."""
    previous = 0
    with contextlib.suppress(OSError, ValueError):
        previous = int(os.pread(fd, 32, 0).decode() or 0)
    if previous != os.getpid():
        with contextlib.suppress(OSError):
            data = str(os.getpid()).encode()
            os.ftruncate(fd, 0)
            os.pwrite(fd, data, 0)
    return previous
