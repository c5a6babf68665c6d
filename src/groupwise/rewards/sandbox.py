"""Run untrusted programs: bubblewrap namespaces (no network, read-only host, fresh work dir) plus rlimits.

Without bubblewrap the program still gets rlimits, its own session and a wall-clock kill (weaker: it can
read world-readable files and reach the network). When run as root, every sandbox runs as a dedicated
unprivileged uid from a small pool, so RLIMIT_NPROC bounds fork bombs and leftovers are killed by uid.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from groupwise.errors import GroupwiseError
from groupwise.rewards._proc import SandboxResult, spawn_and_collect

__all__ = ["BOX", "SandboxLimits", "SandboxResult", "Slot", "acquire_slot", "bwrap_available", "chown_tree",
           "ensure_isolation", "run_sandboxed", "runs_as_slot_uid", "sandbox_limits"]

log = logging.getLogger(__name__)
BOX = "/box"  # the work dir inside the sandbox (the host temp dir with the files, bound read-write)
_UID_BASE = 1_990_000_000  # pool of unprivileged uids used only by sandboxes (when we are root)
_POOL_SIZE = 64
_SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/etc")
_SETPRIV = shutil.which("setpriv")
_DEFAULT_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": "/tmp", "TMPDIR": "/tmp", "LANG": "C.UTF-8"}


@dataclass(frozen=True)
class SandboxLimits:
    """Resource limits of one sandboxed run (the fields of ``SandboxConfig``)."""

    require: bool = False
    timeout_s: float = 10.0
    cpu_s: int = 10
    memory_mb: int = 1024
    max_processes: int = 64
    max_output_kb: int = 64

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> SandboxLimits:
        """Limits from a config dict (``cfg.sandbox.model_dump()``); unknown keys are an error."""
        data = dict(data or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise GroupwiseError(f"unknown sandbox settings {unknown}",
                                 f"use only {', '.join(sorted(known))}")
        return cls(**data)


def sandbox_limits(sandbox: Mapping[str, Any] | SandboxLimits | None) -> SandboxLimits:
    """Normalise a factory's ``sandbox`` param to ``SandboxLimits``."""
    return sandbox if isinstance(sandbox, SandboxLimits) else SandboxLimits.from_dict(sandbox)


@dataclass(frozen=True)
class Slot:
    """A sandbox slot: its index (for per-slot caches) and the uid/gid its programs run as."""

    index: int
    uid: int
    gid: int
    dedicated: bool  # True: uid is used by this slot only (we are root), so leftovers can be killed by uid


class _SlotPool:
    """Hands out the lowest free slot, so per-slot caches stay few and warm."""

    def __init__(self, size: int) -> None:
        self._free = list(range(size))
        self._cond = threading.Condition()

    @contextmanager
    def take(self) -> Iterator[Slot]:
        with self._cond:
            self._cond.wait_for(lambda: bool(self._free))
            index = min(self._free)
            self._free.remove(index)
        try:
            if os.geteuid() == 0:
                yield Slot(index, _UID_BASE + index, _UID_BASE + index, True)
            else:
                yield Slot(index, os.getuid(), os.getgid(), False)
        finally:
            with self._cond:
                self._free.append(index)
                self._cond.notify()


_POOL = _SlotPool(_POOL_SIZE)


def acquire_slot() -> AbstractContextManager[Slot]:
    """Context manager yielding a free ``Slot``; pass it to ``run_sandboxed(slot=...)``."""
    return _POOL.take()


@dataclass
class _Probe:
    done: bool = False
    ok: bool = False
    reason: str = ""
    warned: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)


_PROBE = _Probe()


def bwrap_available() -> bool:
    """Whether bubblewrap is installed and works here (probed once per process)."""
    with _PROBE.lock:
        if not _PROBE.done:
            _PROBE.ok, _PROBE.reason = _probe_bwrap()
            _PROBE.done = True
        return _PROBE.ok


def _probe_bwrap() -> tuple[bool, str]:
    if shutil.which("bwrap") is None:
        return False, "bwrap is not on PATH"
    limits = SandboxLimits(timeout_s=20.0)
    with acquire_slot() as slot:
        result = _run(["/bin/sh", "-c", "exit 0"], {}, limits, slot, (), (), None, None, use_bwrap=True)
    if result.returncode == 0:
        if os.geteuid() == 0 and _SETPRIV is None:
            log.warning("sandbox: setpriv (util-linux) is missing, so sandboxed programs keep uid 0 in their "
                        "user namespace and RLIMIT_NPROC cannot bound fork bombs; install util-linux")
        return True, ""
    return False, f"bwrap fails here (exit {result.returncode}: {result.stderr.strip()[:200]})"


def ensure_isolation(limits: SandboxLimits) -> bool:
    """True with bwrap; without it raise when ``limits.require``, else warn once and return False."""
    if bwrap_available():
        return True
    if limits.require:
        raise GroupwiseError(f"bubblewrap (bwrap) is not available ({_PROBE.reason})",
                             "install it: apt-get install -y bubblewrap, or set sandbox.require: false")
    with _PROBE.lock:
        if not _PROBE.warned:
            _PROBE.warned = True
            log.warning("sandbox: %s; falling back to rlimits only (no filesystem or network isolation)",
                        _PROBE.reason)
    return False


Bind = str | tuple[str, str]


def run_sandboxed(argv: list[str], files: Mapping[str, str | bytes], limits: SandboxLimits, *,
                  extra_ro_binds: Sequence[Bind] = (), writable_dirs: Sequence[Bind] = (),
                  env: Mapping[str, str] | None = None, stdin: str | bytes | None = None,
                  slot: Slot | None = None) -> SandboxResult:
    """Run ``argv`` with ``files`` written into a fresh work dir (its cwd, ``/box`` under bwrap).

    ``extra_ro_binds``: host paths visible read-only (interpreters, toolchains), as ``path`` or a pair.
    ``writable_dirs``: host dirs bound read-write, as ``path`` or ``(host_path, sandbox_path)``.
    """
    use_bwrap = ensure_isolation(limits)
    if slot is None:
        with acquire_slot() as own:
            return _run(argv, files, limits, own, extra_ro_binds, writable_dirs, env, stdin, use_bwrap)
    return _run(argv, files, limits, slot, extra_ro_binds, writable_dirs, env, stdin, use_bwrap)


def runs_as_slot_uid(slot: Slot, argv0: str, ro_binds: Sequence[Bind] = ()) -> bool:
    """Whether the program will run as ``slot.uid`` (else as us): decides who must own writable dirs."""
    if not slot.dedicated:
        return False
    if bwrap_available():
        return _SETPRIV is not None  # bwrap runs as root; setpriv drops the program to the slot uid
    return _world_reachable([argv0, *(b if isinstance(b, str) else b[0] for b in ro_binds)])


def _run(argv: list[str], files: Mapping[str, str | bytes], limits: SandboxLimits, slot: Slot,
         ro: Sequence[Bind], writable: Sequence[Bind],
         env: Mapping[str, str] | None, stdin: str | bytes | None, use_bwrap: bool) -> SandboxResult:
    workdir = Path(tempfile.mkdtemp(prefix="groupwise-box-"))
    try:
        as_slot = slot.dedicated and (_SETPRIV is not None if use_bwrap else _world_reachable([argv[0], *ro]))
        _write_files(workdir, files, slot if as_slot else None)
        full_env = {**_DEFAULT_ENV, **(env or {})}
        pairs = [(w, w) if isinstance(w, str) else w for w in writable]
        ro_binds = [(r, r) if isinstance(r, str) else r for r in ro]
        if use_bwrap:
            cmd, cwd = _bwrap_argv(argv, workdir, ro_binds, pairs, limits, slot if as_slot else None), None
        else:
            mapping = [(str(workdir), BOX), *pairs, *ro_binds]
            argv = [_to_host(a, mapping) for a in argv]
            cmd, cwd = ["/bin/sh", "-c", '"$@"; exit $?', "sh", *argv], str(workdir)  # sh: a parent to kill
            full_env = {k: _to_host(v, mapping) for k, v in full_env.items()}
        drop = as_slot and not use_bwrap  # without bwrap, Popen itself switches to the slot uid
        return spawn_and_collect(cmd, limits, uid=slot.uid if drop else None, gid=slot.gid if drop else None,
                                 kill_uid=slot.uid if as_slot else None, env=full_env, cwd=cwd, stdin=stdin,
                                 sandboxed=use_bwrap)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _write_files(workdir: Path, files: Mapping[str, str | bytes], owner: Slot | None) -> None:
    for name, content in files.items():
        path = (workdir / name).resolve()
        if workdir.resolve() not in path.parents:
            raise ValueError(f"sandbox file name escapes the work dir: {name!r}")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content.encode() if isinstance(content, str) else content)
    if owner is not None:
        chown_tree(workdir, owner.uid, owner.gid)


def chown_tree(path: Path, uid: int, gid: int) -> None:
    """Give a dir and everything below it to ``uid:gid`` (links themselves, not their targets)."""
    for root, dirs, names in os.walk(path):
        for name in [*dirs, *names]:
            os.lchown(os.path.join(root, name), uid, gid)
    os.chown(path, uid, gid)


def _bwrap_argv(argv: list[str], workdir: Path, ro_binds: Sequence[tuple[str, str]],
                writable: Sequence[tuple[str, str]], limits: SandboxLimits,
                switch_to: Slot | None) -> list[str]:
    """The bwrap command line. As root: no user namespace, and setpriv drops the program to the slot uid."""
    if switch_to is None:
        cmd = ["bwrap", "--unshare-all"]
    else:
        cmd = ["bwrap", "--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts",
               "--unshare-cgroup-try", "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
    cmd += ["--die-with-parent", "--new-session", "--hostname", "sandbox", "--proc", "/proc", "--dev", "/dev",
            "--perms", "1777", "--size", str(limits.memory_mb * 1024 * 1024), "--tmpfs", "/tmp"]
    for path in _SYSTEM_DIRS:
        if os.path.islink(path):
            cmd += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            cmd += ["--ro-bind", path, path]
    ro_binds = _outermost([(h, i) for h, i in ro_binds
                           if not (h == i and any(_within(h, d) for d in _SYSTEM_DIRS))])
    for host, inside in ro_binds:
        if os.path.exists(host):
            cmd += ["--ro-bind", host, inside]
    cmd += ["--bind", str(workdir), BOX]
    for host, inside in writable:
        cmd += ["--bind", host, inside]
    mounts = [inside for _, inside in [*ro_binds, *writable]]
    for parent in _ancestors(mounts):
        cmd += ["--chmod", "0755", parent]  # bwrap copies the host's (maybe 0700) modes to created parents
    cmd += ["--chdir", BOX, "--"]
    if switch_to is not None:
        cmd += [_SETPRIV, f"--reuid={switch_to.uid}", f"--regid={switch_to.gid}", "--clear-groups", "--nnp",
                "--pdeathsig", "keep", "--"]
    return [*cmd, *argv]


def _within(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def _outermost(binds: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
    """Drop duplicate binds and those already visible through an enclosing bind of the same tree."""
    unique = list(dict.fromkeys(binds))
    return [(h, i) for h, i in unique if not any(
        (h2, i2) != (h, i) and _within(h, h2) and _within(i, i2) and h[len(h2):] == i[len(i2):]
        for h2, i2 in unique)]


def _ancestors(mounts: Sequence[str]) -> list[str]:
    """The parent dirs bwrap creates for these mount points (on its own tmpfs root), outermost first."""
    found: dict[str, None] = {}
    for path in mounts:
        for parent in reversed(Path(path).parents):
            text = str(parent)
            covered = any(_within(text, m) for m in [*mounts, *_SYSTEM_DIRS, "/tmp", BOX])
            if text != "/" and not covered:
                found[text] = None
    return list(found)


def _to_host(value: str, mapping: Sequence[tuple[str, str]]) -> str:
    """Without bwrap there are no mounts: rewrite a sandbox path (``/box/x``) to its host path."""
    for host, inside in sorted(mapping, key=lambda pair: -len(pair[1])):
        if _within(value, inside):
            return host + value[len(inside):]
    return value


def _world_reachable(paths: Sequence[Bind]) -> bool:
    """Whether an unprivileged uid can reach every path (each parent dir o+x)."""
    for item in paths:
        raw = item if isinstance(item, str) else item[0]
        path = Path(shutil.which(raw) or raw).absolute()
        for parent in [*reversed(path.parents), path]:
            try:
                if parent.is_dir() and not parent.stat().st_mode & 0o001:
                    return False
            except OSError:
                return False
    return True
