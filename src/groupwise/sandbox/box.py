"""Run untrusted programs: bubblewrap namespaces (no network, read-only host, a size-capped tmpfs work dir),
a cgroup per run (memory, processes, CPU over the whole tree), a seccomp filter, and rlimits.

Without bubblewrap the program still gets the cgroup, the seccomp filter (which then also denies IP sockets),
rlimits, its own session and a wall-clock kill (weaker: it can read world-readable files). When run as root,
every sandbox runs as a dedicated unprivileged uid of its slot (without bubblewrap a program that such a uid
could not even start, e.g. an interpreter under a 0700 /root, is refused rather than run as root); slots are
locked across processes (``slots.py``) so leftovers are killed by uid and cgroup without touching another
process's sandboxes. docs/sandbox.md has the threat model.
"""

from __future__ import annotations

import contextlib
import glob
import logging
import os
import shutil
import tempfile
import threading
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from groupwise.errors import GroupwiseError
from groupwise.sandbox import cgroup as cgroups
from groupwise.sandbox import seccomp
from groupwise.sandbox.files import as_bytes, remove_tree, safe_name, write_files
from groupwise.sandbox.process import SandboxResult, cleanup_uid, spawn_and_collect
from groupwise.sandbox.slots import Slot, SlotPool

__all__ = ["BOX", "SandboxLimits", "SandboxResult", "Slot", "acquire_slot", "bwrap_available", "check_not_root",
           "chown_tree", "ensure_isolation", "root_fallback", "run_sandboxed", "runs_as_slot_uid", "sandbox_limits",
           "world_reachable"]

log = logging.getLogger(__name__)
BOX = "/box"  # the work dir inside the sandbox (a size-capped tmpfs; without bwrap a host dir)
_UID_BASE = 1_990_100_000  # uids used only by sandboxes (when root); not the unlocked pool of older versions
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
    cpus: float = 1.0  # CPU bandwidth of one run's cgroup, in cores (not a config key: runners may raise it)

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


def _work_root() -> str:
    """Where the fallback's work dirs go: RAM (/dev/shm, charged to the run's cgroup) when there is one."""
    shm = "/dev/shm"
    return shm if os.path.isdir(shm) and os.access(shm, os.W_OK | os.X_OK) else tempfile.gettempdir()


def _work_prefix(index: int) -> str:
    return f"groupwise-box-{index}-"


def _take_over(slot: Slot) -> None:
    """Clean what another (maybe dead) process left on this slot: its processes, cgroup and work dirs."""
    if slot.dedicated:
        cleanup_uid(slot.uid)
    host, _ = cgroups.detect()
    if host is not None:
        cgroups.remove_stale(host, f"{cgroups.PREFIX}{slot.index}")
    for path in glob.glob(os.path.join(_work_root(), _work_prefix(slot.index) + "*")):
        remove_tree(path)


_POOL = SlotPool(_POOL_SIZE, _UID_BASE, _take_over)


def acquire_slot() -> AbstractContextManager[Slot]:
    """Context manager yielding a free ``Slot`` (free in every process on the host); pass it to
    ``run_sandboxed(slot=...)``. ``Slot.index`` keys per-slot caches, safely across processes."""
    return _POOL.take()


@dataclass
class _Probe:
    done: bool = False
    ok: bool = False
    reason: str = ""
    warned: bool = False
    layers_warned: bool = False  # the one start-up warning about missing cgroups or seccomp
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
    """True with bwrap; without it raise when ``limits.require``, else warn once and return False.

    Also says once which layers are missing: without cgroups the memory, process and CPU-time limits are
    per process; without libseccomp there is no syscall filter (an error when ``limits.require``).
    """
    seccomp_ok, seccomp_reason = seccomp.available()
    if limits.require and not seccomp_ok:
        raise GroupwiseError(f"the sandbox's seccomp filter is not available ({seccomp_reason})",
                             "run scripts/setup.sh (apt-get install -y libseccomp2; pip install pyseccomp), "
                             "or set sandbox.require: false")
    _warn_missing_layers(seccomp_reason)
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


def _warn_missing_layers(seccomp_reason: str) -> None:
    host, cgroup_reason = cgroups.detect()
    with _PROBE.lock:
        if _PROBE.layers_warned:
            return
        _PROBE.layers_warned = True
    if host is None:
        log.warning("sandbox: no cgroup per sandbox (%s): memory, CPU time and process count are limited per "
                    "process (rlimits), not for a sample's whole process tree", cgroup_reason)
    elif len(host.limits) < 3:
        log.warning("sandbox: the cgroups here limit %s per sandbox; %s stay per process",
                    ", ".join(host.limits), ", ".join(c for c in ("memory", "pids", "cpu") if c not in host.limits))
    if seccomp_reason:
        log.warning("sandbox: no seccomp filter (%s): keyring, namespace, ptrace, mount, module and BPF calls "
                    "and non-local sockets are not blocked", seccomp_reason)


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


def root_fallback() -> bool:
    """Whether sandboxes run without bubblewrap while we are root (each must then drop to its slot's uid)."""
    return os.geteuid() == 0 and not bwrap_available()


def check_not_root(paths: Sequence[Bind], what: str) -> None:
    """Raise when, root without bubblewrap, a slot's unprivileged uid could not reach ``paths``: the program
    would have to run as root, which the sandbox refuses."""
    if root_fallback() and not world_reachable(paths):
        raise GroupwiseError(
            f"without bubblewrap the sandbox runs {what} as an unprivileged uid, but that uid cannot reach "
            f"{', '.join(p if isinstance(p, str) else p[0] for p in paths)} (a parent dir is not o+x), and it "
            "will not run model-written code as root",
            "install bubblewrap (apt-get install -y bubblewrap), run groupwise as a non-root user, or install "
            f"{what} where every user can read it (e.g. under /usr or /opt)")


def runs_as_slot_uid(slot: Slot, argv0: str, ro_binds: Sequence[Bind] = ()) -> bool:
    """Whether the program will run as ``slot.uid`` (else as us): decides who must own writable dirs."""
    if not slot.dedicated:
        return False
    if bwrap_available():
        return _SETPRIV is not None  # bwrap runs as root; setpriv drops the program to the slot uid
    check_not_root([argv0, *ro_binds], argv0)
    return True  # without bwrap a root's sandbox always drops to the slot uid (or is refused above)


def _run(argv: list[str], files: Mapping[str, str | bytes], limits: SandboxLimits, slot: Slot,
         ro: Sequence[Bind], writable: Sequence[Bind],
         env: Mapping[str, str] | None, stdin: str | bytes | None, use_bwrap: bool) -> SandboxResult:
    """One run; whatever goes wrong on the way (a bad encoding, a full disk, cleanup) is a failed result."""
    names = {safe_name(name): content for name, content in files.items()}  # a caller's bug: raises
    workdir: str | None = None
    fds: list[int] = []
    cgroup = None
    try:
        host, _ = cgroups.detect()
        if host is not None:
            cgroup = cgroups.BoxCgroup.create(host, f"{cgroups.PREFIX}{slot.index}", limits)
        as_slot = slot.dedicated and (_SETPRIV is not None or not use_bwrap)
        full_env = {**_DEFAULT_ENV, **(env or {})}
        pairs = [(w, w) if isinstance(w, str) else w for w in writable]
        ro_binds = [(r, r) if isinstance(r, str) else r for r in ro]
        if use_bwrap:
            file_args = _box_files(names, fds)
            program = seccomp.bpf_program(allow_inet=True)
            seccomp_args = ["--seccomp", str(_memfd(program, fds))] if program is not None else []
            cmd = _bwrap_argv(argv, file_args + seccomp_args, ro_binds, pairs, limits, slot if as_slot else None)
            cwd, loader = None, None
        else:
            workdir = tempfile.mkdtemp(prefix=_work_prefix(slot.index), dir=_work_root())
            box, tmp = os.path.join(workdir, "box"), os.path.join(workdir, "tmp")  # its /box and $TMPDIR
            os.mkdir(box)
            os.mkdir(tmp, 0o1777)
            write_files(box, names)
            if as_slot:
                chown_tree(Path(workdir), slot.uid, slot.gid)
            mapping = [(box, BOX), (tmp, "/tmp"), *pairs, *ro_binds]
            argv = [_to_host(a, mapping) for a in argv]
            if slot.dedicated:  # root: the program runs as the slot's uid, never as root
                check_not_root([argv[0], *(h for h, _ in [*ro_binds, *pairs])], argv[0])
            cmd, cwd = ["/bin/sh", "-c", '"$@"; exit $?', "sh", *argv], box  # sh: a parent to kill
            full_env = {k: _to_host(v, mapping) for k, v in full_env.items()}
            loader = seccomp.loader()
        drop = as_slot and not use_bwrap  # without bwrap, the child itself switches to the slot uid
        return spawn_and_collect(cmd, limits, uid=slot.uid if drop else None, gid=slot.gid if drop else None,
                                 kill_uid=slot.uid if as_slot else None, env=full_env, cwd=cwd, stdin=stdin,
                                 sandboxed=use_bwrap, cgroup=cgroup, seccomp=loader, pass_fds=fds)
    except GroupwiseError:
        raise  # a setup the sandbox refuses (root without a way to drop privileges): the run's error
    except Exception as err:  # one sample's failure is its result, never the batch's
        log.warning("sandbox: run failed before or around the program: %r", err)
        return SandboxResult(126, "", f"sandbox error: {err!r}", False, False, 0.0, use_bwrap)
    finally:
        for fd in fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        if cgroup is not None and not cgroup.destroy():
            log.warning("sandbox: could not remove the cgroup of slot %d (its next run cleans it)", slot.index)
        if workdir is not None and not remove_tree(workdir):
            log.warning("sandbox: could not remove %s (the slot's next taker cleans it)", workdir)


def _memfd(data: bytes, fds: list[int]) -> int:
    fd = os.memfd_create("groupwise-box")
    fds.append(fd)
    _write_all(fd, data)
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _box_files(files: Mapping[str, str | bytes], fds: list[int]) -> list[str]:
    """bwrap arguments that copy ``files`` into the sandbox's tmpfs ``/box`` (dirs writable by the program)."""
    args: list[str] = []
    dirs = sorted({str(parent) for name in files for parent in Path(name).parents if str(parent) != "."},
                  key=lambda d: d.count("/"))
    for folder in dirs:
        args += ["--perms", "0777", "--dir", f"{BOX}/{folder}"]
    for name, content in files.items():
        args += ["--perms", "0666", "--file", str(_memfd(as_bytes(content), fds)), f"{BOX}/{name}"]
    return args


def chown_tree(path: Path, uid: int, gid: int) -> None:
    """Give a dir and everything below it to ``uid:gid`` (links themselves, not their targets)."""
    for root, dirs, names in os.walk(path):
        for name in [*dirs, *names]:
            os.lchown(os.path.join(root, name), uid, gid)
    os.chown(path, uid, gid)


def _bwrap_argv(argv: list[str], box_args: list[str], ro_binds: Sequence[tuple[str, str]],
                writable: Sequence[tuple[str, str]], limits: SandboxLimits,
                switch_to: Slot | None) -> list[str]:
    """The bwrap command line. As root: no user namespace, and setpriv drops the program to the slot uid.

    ``/box`` and ``/tmp`` are tmpfs capped at ``memory_mb`` each (and charged to the run's cgroup, which caps
    their sum with the processes'); ``box_args`` fill ``/box`` and add the seccomp program.
    """
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
    cmd += ["--perms", "0777", "--size", str(limits.memory_mb * 1024 * 1024), "--tmpfs", BOX, *box_args]
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


def world_reachable(paths: Sequence[Bind]) -> bool:
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
