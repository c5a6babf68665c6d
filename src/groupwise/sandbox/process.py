"""Spawn one limited process: cgroup, uid, rlimits and seccomp set in the child before exec; a wall-clock
kill of its group and cgroup; capped output capture."""

from __future__ import annotations

import os
import resource
import selectors
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from groupwise.sandbox.cgroup import BoxCgroup

_MB = 1024 * 1024
_EXIT_GRACE_S = 1.0  # how long to keep reading after the main process exits (a leftover may hold the pipes)
_CPU_POLL_S = 0.1  # how often the cgroup's CPU time is checked against cpu_s
# exit statuses of a run stopped by a limit: SIGKILL, SIGXCPU, SIGXFSZ, direct or as bwrap reports them (128+n)
_LIMIT_STATUSES = frozenset({-9, -24, -25, 137, 152, 153})


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
    limit_hit: bool = False  # stopped by a limit: wall clock, CPU, memory, processes, output or disk

    @property
    def ok(self) -> bool:
        """Exited 0 on its own."""
        return self.returncode == 0 and not self.timed_out and not self.killed


@dataclass(frozen=True)
class ChildSetup:
    """What the child does before exec: join its cgroup (as root), drop to a uid, rlimits, seccomp."""

    cgroup_procs: Sequence[str] = ()
    uid: int | None = None
    gid: int | None = None
    seccomp: Any = None  # a libseccomp filter whose load() applies it (the fallback: bwrap loads its own)


def _limit_table(limits: Any, nproc: int) -> list[tuple[int, int, int]]:
    """(resource, soft, hard) for the child, each capped at our own hard limit (which the child inherits)."""
    cpu = int(limits.cpu_s)
    memory, fsize = limits.memory_mb * _MB, max(limits.memory_mb, 64) * _MB
    table = []
    for kind, soft, hard in [(resource.RLIMIT_CPU, cpu, cpu + 1), (resource.RLIMIT_AS, memory, memory),
                             (resource.RLIMIT_NPROC, nproc, nproc), (resource.RLIMIT_FSIZE, fsize, fsize),
                             (resource.RLIMIT_NOFILE, 1024, 1024), (resource.RLIMIT_CORE, 0, 0)]:
        old_hard = resource.getrlimit(kind)[1]
        if old_hard != resource.RLIM_INFINITY:
            soft, hard = min(soft, old_hard), min(hard, old_hard)
        table.append((kind, soft, hard))
    return table


def _rlimits(limits: Any, nproc: int, setup: ChildSetup = ChildSetup()) -> Callable[[], None]:
    """The preexec function: applied in the child, before exec (cgroup first, while still root)."""
    table = _limit_table(limits, nproc)
    pid_text = b"%d"

    def apply() -> None:
        for path in setup.cgroup_procs:
            fd = os.open(path, os.O_WRONLY)
            try:
                os.write(fd, pid_text % os.getpid())
            finally:
                os.close(fd)
        if setup.uid is not None and setup.gid is not None:
            os.setgroups([])
            os.setresgid(setup.gid, setup.gid, setup.gid)
            os.setresuid(setup.uid, setup.uid, setup.uid)
        for kind, soft, hard in table:
            resource.setrlimit(kind, (soft, hard))
        if setup.seccomp is not None:
            setup.seccomp.load()

    return apply


_PRLIMIT = shutil.which("prlimit")
_PRLIMIT_FLAGS = {resource.RLIMIT_CPU: "--cpu", resource.RLIMIT_AS: "--as", resource.RLIMIT_NPROC: "--nproc",
                  resource.RLIMIT_FSIZE: "--fsize", resource.RLIMIT_NOFILE: "--nofile",
                  resource.RLIMIT_CORE: "--core"}
# joins each cgroup given before "--", then runs the rest: the shell is what moves, before anything forks
_JOIN = 'while [ "$1" != -- ]; do echo $$ > "$1" || exit 125; shift; done; shift; exec "$@"'


def _exec_chain(cmd: Sequence[str], limits: Any, nproc: int, setup: ChildSetup) -> list[str] | None:
    """``cmd`` behind a shell that joins the cgroup and prlimit that sets the rlimits: the same setup as
    ``_rlimits`` without a preexec function, so Popen can vfork (a fork copies our page tables: 30 ms a run
    with torch imported, 114 ms with 2 GiB resident). None when the child must also switch uid or load
    seccomp itself."""
    if _PRLIMIT is None or setup.uid is not None or setup.seccomp is not None:
        return None
    flags = [f"{_PRLIMIT_FLAGS[kind]}={soft}:{hard}" for kind, soft, hard in _limit_table(limits, nproc)]
    return ["/bin/sh", "-c", _JOIN, "sh", *setup.cgroup_procs, "--", _PRLIMIT, *flags, "--", *cmd]


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
                      stdin: str | bytes | None, sandboxed: bool, cgroup: BoxCgroup | None = None,
                      seccomp: Any = None, pass_fds: Sequence[int] = ()) -> SandboxResult:
    """Run ``cmd`` in a new session with rlimits (and ``cgroup``); kill its group, cgroup and ``kill_uid``
    at the deadline or when the cgroup's CPU time passes ``limits.cpu_s``."""
    nproc = limits.max_processes + (0 if kill_uid is not None else _tasks_of(os.getuid()))
    setup = ChildSetup(cgroup.procs_files if cgroup else (), uid, gid, seccomp)
    chain = _exec_chain(cmd, limits, nproc, setup)
    start = time.monotonic()
    try:
        proc = subprocess.Popen(
            chain or list(cmd), stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=dict(env), cwd=cwd, start_new_session=True,
            pass_fds=tuple(pass_fds), preexec_fn=None if chain else _rlimits(limits, nproc, setup))
    except (OSError, subprocess.SubprocessError, ValueError) as err:
        return SandboxResult(127, "", f"cannot start {cmd[0]}: {err}", False, False, 0.0, sandboxed)
    if stdin is not None:
        data = stdin.encode(errors="surrogatepass") if isinstance(stdin, str) else stdin
        threading.Thread(target=_feed, args=(proc.stdin, data), daemon=True).start()
    over_cpu = _cpu_watch(cgroup, limits.cpu_s)
    out, err, timed_out, stopped = _collect(proc, start + limits.timeout_s, limits.max_output_kb * 1024,
                                            over_cpu)
    killed = timed_out or stopped.cpu
    if not killed:
        try:
            proc.wait(timeout=_EXIT_GRACE_S)  # output closed: it is about to exit
        except subprocess.TimeoutExpired:
            killed = True
    _killpg(proc.pid)
    if cgroup is not None:
        cgroup.kill()
    proc.wait()
    if kill_uid is not None and cgroup is None:
        cleanup_uid(kill_uid)  # with a cgroup every leftover was in it, and is gone
    code = proc.returncode
    killed = killed or code < 0
    hit = (timed_out or stopped.cpu or stopped.capped or code in _LIMIT_STATUSES
           or bool(cgroup and cgroup.limits_hit()) or b"MemoryError" in err)
    return SandboxResult(code, out.decode(errors="replace"), err.decode(errors="replace"), timed_out, killed,
                         time.monotonic() - start, sandboxed, hit)


def _cpu_watch(cgroup: BoxCgroup | None, cpu_s: float) -> Callable[[], bool] | None:
    """A check that the whole tree's CPU time is past ``cpu_s`` (polled at most every _CPU_POLL_S)."""
    if cgroup is None:
        return None
    last = [0.0]

    def over() -> bool:
        now = time.monotonic()
        if now - last[0] < _CPU_POLL_S:
            return False
        last[0] = now
        used = cgroup.cpu_seconds()
        return used is not None and used > cpu_s

    return over


def cleanup_uid(uid: int, wait_s: float = 10.0) -> None:
    """Kill what is left of a dedicated uid and wait until it is gone (SIGKILL acts asynchronously)."""
    end = time.monotonic() + wait_s
    while _tasks_of(uid, threads=False) and time.monotonic() < end:
        try:
            kill_uid(uid)
        except (OSError, subprocess.SubprocessError):
            pass
        time.sleep(0.01)


@dataclass
class _Stopped:
    cpu: bool = False  # killed because the tree's CPU time passed cpu_s
    capped: bool = False  # output beyond the cap was dropped


def _collect(proc: subprocess.Popen, deadline: float, cap: int,
             over_cpu: Callable[[], bool] | None = None) -> tuple[bytes, bytes, bool, _Stopped]:
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
    stopped = _Stopped()
    try:
        while sel.get_map():
            now = time.monotonic()
            if now >= deadline:
                timed_out = proc.poll() is None
                _killpg(proc.pid)
                break
            if over_cpu is not None and exited_at is None and over_cpu():
                stopped.cpu = True
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
                if len(buf) + len(chunk) > cap:
                    stopped.capped = True
                if len(buf) < cap:
                    buf += chunk[: cap - len(buf)]
    finally:
        sel.close()
        proc.stdout.close()
        proc.stderr.close()
    return bytes(bufs[out_fd]), bytes(bufs[err_fd]), timed_out, stopped
