"""Spawn one limited process: rlimits in the child, a wall-clock kill of its group, capped output capture."""

from __future__ import annotations

import os
import resource
import selectors
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

_MB = 1024 * 1024
_EXIT_GRACE_S = 1.0  # how long to keep reading after the main process exits (a leftover may hold the pipes)


@dataclass(frozen=True)
class SandboxResult:
    """What a sandboxed run did: exit status, captured (capped) output and how it ended."""

    returncode: int
    stdout: str
    stderr: str
    timed_out: bool
    killed: bool
    duration_s: float
    sandboxed: bool

    @property
    def ok(self) -> bool:
        """Exited 0 on its own."""
        return self.returncode == 0 and not self.timed_out and not self.killed


def _rlimits(limits: Any, nproc: int) -> Callable[[], None]:
    """The preexec function: applied in the child, after the uid switch, before exec."""
    cpu = int(limits.cpu_s)
    table = [
        (resource.RLIMIT_CPU, cpu, cpu + 1),
        (resource.RLIMIT_AS, limits.memory_mb * _MB, limits.memory_mb * _MB),
        (resource.RLIMIT_NPROC, nproc, nproc),
        (resource.RLIMIT_FSIZE, max(limits.memory_mb, 64) * _MB, max(limits.memory_mb, 64) * _MB),
        (resource.RLIMIT_NOFILE, 1024, 1024),
        (resource.RLIMIT_CORE, 0, 0),
    ]

    def apply() -> None:
        for kind, soft, hard in table:
            old_soft, old_hard = resource.getrlimit(kind)
            if old_hard != resource.RLIM_INFINITY:
                soft, hard = min(soft, old_hard), min(hard, old_hard)
            resource.setrlimit(kind, (soft, hard))

    return apply


def _tasks_of(uid: int, threads: bool = True) -> int:
    """How many tasks (threads count for RLIMIT_NPROC) or processes run as ``uid`` now."""
    count = 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            if entry.stat().st_uid == uid:
                count += len(os.listdir(f"/proc/{entry.name}/task")) if threads else 1
        except OSError:
            continue
    return count


def kill_uid(uid: int) -> None:
    """Kill every process of ``uid`` (a dedicated sandbox uid) by kill(-1) from a helper running as it."""

    def kill_all() -> None:
        for _ in range(3):
            os.kill(-1, signal.SIGKILL)

    quiet = subprocess.DEVNULL
    subprocess.run(["/bin/true"], user=uid, group=uid, extra_groups=[], preexec_fn=kill_all,
                   stdin=quiet, stdout=quiet, stderr=quiet, check=False)


def _killpg(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _feed(pipe: Any, data: bytes) -> None:
    try:
        pipe.write(data)
    except (BrokenPipeError, OSError):
        pass
    finally:
        try:
            pipe.close()
        except OSError:
            pass


def spawn_and_collect(cmd: Sequence[str], limits: Any, *, uid: int | None, gid: int | None,
                      kill_uid: int | None, env: Mapping[str, str], cwd: str | None,
                      stdin: str | bytes | None, sandboxed: bool) -> SandboxResult:
    """Run ``cmd`` in a new session with rlimits; kill its group (and ``kill_uid``) at the deadline."""
    nproc = limits.max_processes + (0 if kill_uid is not None else _tasks_of(os.getuid()))
    start = time.monotonic()
    try:
        proc = subprocess.Popen(
            list(cmd), stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=dict(env), cwd=cwd, start_new_session=True,
            user=uid, group=gid, extra_groups=[] if uid is not None else None,
            preexec_fn=_rlimits(limits, nproc))  # rlimits must be set in the child
    except OSError as err:
        return SandboxResult(127, "", f"cannot start {cmd[0]}: {err}", False, False, 0.0, sandboxed)
    if stdin is not None:
        data = stdin.encode() if isinstance(stdin, str) else stdin
        threading.Thread(target=_feed, args=(proc.stdin, data), daemon=True).start()
    out, err, timed_out = _collect(proc, start + limits.timeout_s, limits.max_output_kb * 1024)
    killed = timed_out
    if not timed_out:
        try:
            proc.wait(timeout=_EXIT_GRACE_S)  # output closed: it is about to exit
        except subprocess.TimeoutExpired:
            killed = True
    _killpg(proc.pid)
    proc.wait()
    if kill_uid is not None:
        _cleanup_uid(kill_uid)
    code = proc.returncode
    killed = killed or code < 0
    return SandboxResult(code, out.decode(errors="replace"), err.decode(errors="replace"), timed_out, killed,
                         time.monotonic() - start, sandboxed)


def _cleanup_uid(uid: int, wait_s: float = 10.0) -> None:
    """Kill what is left of a dedicated uid and wait until it is gone (SIGKILL acts asynchronously)."""
    end = time.monotonic() + wait_s
    while _tasks_of(uid, threads=False) and time.monotonic() < end:
        try:
            kill_uid(uid)
        except (OSError, subprocess.SubprocessError):
            pass
        time.sleep(0.01)


def _collect(proc: subprocess.Popen, deadline: float, cap: int) -> tuple[bytes, bytes, bool]:
    """Read stdout/stderr until EOF, keeping at most ``cap`` bytes of each; True when the deadline hit."""
    assert proc.stdout is not None and proc.stderr is not None
    out_fd, err_fd = proc.stdout.fileno(), proc.stderr.fileno()
    bufs: dict[int, bytearray] = {out_fd: bytearray(), err_fd: bytearray()}
    sel = selectors.DefaultSelector()
    for fd in (out_fd, err_fd):
        os.set_blocking(fd, False)
        sel.register(fd, selectors.EVENT_READ)
    exited_at: float | None = None
    timed_out = False
    try:
        while sel.get_map():
            now = time.monotonic()
            if now >= deadline:
                timed_out = proc.poll() is None
                _killpg(proc.pid)
                break
            if exited_at is None and proc.poll() is not None:
                exited_at = now
            if exited_at is not None and now - exited_at > _EXIT_GRACE_S:
                break
            for key, _ in sel.select(min(deadline - now, 0.05)):
                try:
                    chunk = os.read(key.fd, 1 << 16)
                except BlockingIOError:
                    continue
                if not chunk:
                    sel.unregister(key.fd)
                    continue
                buf = bufs[key.fd]
                if len(buf) < cap:
                    buf += chunk[: cap - len(buf)]
    finally:
        sel.close()
        proc.stdout.close()
        proc.stderr.close()
    return bytes(bufs[out_fd]), bytes(bufs[err_fd]), timed_out
