"""One cgroup per sandboxed run: memory, process and CPU limits over its whole process tree.

cgroup v2 (``memory.max``, ``pids.max``, ``cpu.max``) where the unified hierarchy has those controllers and
lets us enable them below our own cgroup; else the v1 hierarchies (``memory.limit_in_bytes``, ``pids.max``,
``cpu.cfs_quota_us``, ``cpuacct.usage``). The memory limit charges tmpfs pages (the sandbox's ``/box`` and
``/tmp``) to the run too. The child joins its cgroup before it execs (see ``process``), so nothing it forks is
outside. Every function here swallows ``OSError``: a cgroup that cannot be made means per-process limits.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

_MB = 1024 * 1024
_V1_CONTROLLERS = ("memory", "pids", "cpu", "cpuacct")
_V2_CONTROLLERS = ("memory", "pids", "cpu")
_PERIOD_US = 100_000
_PID_SLACK = 4  # bwrap's two processes and the fallback's /bin/sh count against pids.max too
PREFIX = "groupwise-slot-"


@dataclass(frozen=True)
class CgroupHost:
    """Where this process may create sandbox cgroups: one base dir per controller."""

    version: int
    bases: Mapping[str, str]  # controller -> dir (v2: the same dir for all)

    @property
    def limits(self) -> list[str]:
        """Which limits are per sandbox: a subset of memory, pids, cpu."""
        return [c for c in _V2_CONTROLLERS if c in self.bases]


def _read(path: str) -> str:
    with open(path) as f:
        return f.read()


def _write(path: str, value: str) -> None:
    with open(path, "w") as f:
        f.write(value)


def _mounts() -> list[tuple[str, str, str, set[str]]]:
    """(mount root, mount point, fs type, super options) of every cgroup mount."""
    found = []
    for line in _read("/proc/self/mountinfo").splitlines():
        left, _, right = line.partition(" - ")
        fields, tail = left.split(), right.split()
        if len(fields) >= 5 and len(tail) >= 3 and tail[0] in ("cgroup", "cgroup2"):
            found.append((fields[3], fields[4].replace("\\040", " "), tail[0], set(tail[2].split(","))))
    return found


def _own_paths() -> dict[str, str]:
    """Our cgroup path per v1 controller, and under key "" the v2 path (from /proc/self/cgroup)."""
    paths = {}
    for line in _read("/proc/self/cgroup").splitlines():
        _, controllers, path = line.split(":", 2)
        for name in controllers.split(",") if controllers else [""]:
            paths[name] = path
    return paths


def _join(mount_point: str, mount_root: str, own: str) -> str | None:
    if not (own == mount_root or own.startswith(mount_root.rstrip("/") + "/")):
        return None  # our cgroup is outside this mount (another cgroup namespace)
    return os.path.join(mount_point, own[len(mount_root):].lstrip("/"))


@lru_cache(maxsize=1)
def detect() -> tuple[CgroupHost | None, str]:
    """The cgroup setup usable here, or None and the reason (probed once per process)."""
    try:
        mounts, own = _mounts(), _own_paths()
    except (OSError, ValueError) as err:
        return None, f"cannot read the cgroup setup ({err})"
    reasons = []
    for root, point, kind, _ in mounts:
        if kind == "cgroup2" and "" in own:
            host, reason = _v2_host(_join(point, root, own[""]))
            if host is not None:
                return host, ""
            reasons.append(reason)
    bases = {}
    for name in _V1_CONTROLLERS:
        for root, point, kind, opts in mounts:
            base = _join(point, root, own.get(name, "/")) if kind == "cgroup" and name in opts else None
            if base is not None and os.access(base, os.W_OK):
                bases[name] = base
                break
    if "memory" in bases:
        return CgroupHost(1, bases), ""
    reasons.append("no writable memory cgroup (v1 or v2) for this process")
    return None, "; ".join(reasons)


def _v2_host(base: str | None) -> tuple[CgroupHost | None, str]:
    if base is None or not os.access(base, os.W_OK):
        return None, "the cgroup v2 hierarchy is not writable here"
    try:
        available = set(_read(os.path.join(base, "cgroup.controllers")).split())
        wanted = [c for c in _V2_CONTROLLERS if c in available]
        if "memory" not in wanted:
            return None, "cgroup v2 has no memory controller here"
        enabled = set(_read(os.path.join(base, "cgroup.subtree_control")).split())
        missing = [c for c in wanted if c not in enabled]
        if missing:
            _write(os.path.join(base, "cgroup.subtree_control"), " ".join(f"+{c}" for c in missing))
    except OSError as err:
        return None, (f"cannot enable cgroup v2 controllers below {base} ({err}; run groupwise in a cgroup "
                      "with delegated controllers, e.g. systemd-run -p Delegate=yes)")
    return CgroupHost(2, {c: base for c in wanted}), ""


class BoxCgroup:
    """The cgroup(s) of one run: created with its limits, joined by the child, killed and removed after."""

    def __init__(self, host: CgroupHost, dirs: dict[str, str]) -> None:
        self.host = host
        self.dirs = dirs  # controller -> this run's cgroup dir

    @classmethod
    def create(cls, host: CgroupHost, name: str, limits: Any) -> BoxCgroup | None:
        """A fresh cgroup named ``name`` with ``limits`` (memory_mb, max_processes, cpus), or None."""
        dirs: dict[str, str] = {}
        for controller, base in host.bases.items():
            path = os.path.join(base, name)
            if path not in dirs.values():
                with contextlib.suppress(FileExistsError):
                    try:
                        os.mkdir(path)
                    except OSError:
                        cls(host, dirs).destroy()
                        return None
            dirs[controller] = path
        box = cls(host, dirs)
        try:
            box._set_limits(limits)
        except OSError:
            box.destroy()
            return None
        return box

    def _set_limits(self, limits: Any) -> None:
        memory = str(limits.memory_mb * _MB)
        procs = str(limits.max_processes + _PID_SLACK)
        quota = max(int(getattr(limits, "cpus", 1.0) * _PERIOD_US), 1000)
        mem, pids, cpu = (self.dirs.get(c) for c in ("memory", "pids", "cpu"))
        if self.host.version == 2:
            assert mem is not None
            _write(f"{mem}/memory.max", memory)
            _try_write(f"{mem}/memory.swap.max", "0")
            if pids:
                _write(f"{pids}/pids.max", procs)
            if cpu:
                _write(f"{cpu}/cpu.max", f"{quota} {_PERIOD_US}")
            return
        assert mem is not None
        _write(f"{mem}/memory.limit_in_bytes", memory)
        _try_write(f"{mem}/memory.memsw.limit_in_bytes", memory)
        if pids:
            _write(f"{pids}/pids.max", procs)
        if cpu:
            _write(f"{cpu}/cpu.cfs_period_us", str(_PERIOD_US))
            _write(f"{cpu}/cpu.cfs_quota_us", str(quota))

    @property
    def procs_files(self) -> list[str]:
        """The ``cgroup.procs`` files the child writes its pid to (one per distinct dir)."""
        return [f"{d}/cgroup.procs" for d in dict.fromkeys(self.dirs.values())]

    def cpu_seconds(self) -> float | None:
        """CPU time used by the whole tree so far."""
        try:
            if self.host.version == 2:
                stat = _keyed(_read(f"{self.dirs['memory']}/cpu.stat"))
                return stat.get("usage_usec", 0) / 1e6
            if "cpuacct" in self.dirs:
                return int(_read(f"{self.dirs['cpuacct']}/cpuacct.usage")) / 1e9
        except (OSError, ValueError):
            pass
        return None

    def limits_hit(self) -> list[str]:
        """Which of its limits (memory, pids) the run ran into."""
        hit = []
        try:
            mem = self.dirs["memory"]
            if self.host.version == 2:
                events = _keyed(_read(f"{mem}/memory.events"))
                if events.get("max", 0) or events.get("oom_kill", 0):
                    hit.append("memory")
            elif int(_read(f"{mem}/memory.failcnt")) or _keyed(_read(f"{mem}/memory.oom_control")).get(
                    "oom_kill", 0):
                hit.append("memory")
            if "pids" in self.dirs and _keyed(_read(f"{self.dirs['pids']}/pids.events")).get("max", 0):
                hit.append("pids")
        except (OSError, ValueError, KeyError):
            pass
        return hit

    def pids(self) -> list[int]:
        """The processes in the run's cgroup now."""
        seen: set[int] = set()
        for path in self.procs_files:
            with contextlib.suppress(OSError, ValueError):
                seen.update(int(p) for p in _read(path).split())
        return sorted(seen)

    def kill(self, wait_s: float = 10.0) -> bool:
        """SIGKILL everything in it until it is empty; True when it is."""
        end = time.monotonic() + wait_s
        kill_file = f"{self.dirs.get('memory', '')}/cgroup.kill"
        while True:
            left = self.pids()
            if not left:
                return True
            if time.monotonic() > end:
                return False
            if self.host.version == 2 and os.path.exists(kill_file):
                _try_write(kill_file, "1")
            else:
                for pid in left:
                    with contextlib.suppress(OSError):
                        os.kill(pid, signal.SIGKILL)
            time.sleep(0.002)

    def destroy(self) -> bool:
        """Kill what is left and remove the cgroup dirs; never raises. True when all are gone."""
        self.kill()
        gone = True
        for path in dict.fromkeys(self.dirs.values()):
            for _ in range(200):  # an exiting task can keep it busy for a moment
                try:
                    os.rmdir(path)
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.005)
            else:
                gone = False
        return gone


def remove_stale(host: CgroupHost, name: str) -> None:
    """Kill and remove a run's cgroup left by a process that died (same slot, so ours now)."""
    dirs = {c: os.path.join(b, name) for c, b in host.bases.items() if Path(b, name).is_dir()}
    if dirs:
        BoxCgroup(host, dirs).destroy()


def _keyed(text: str) -> dict[str, int]:
    out = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].lstrip("-").isdigit():
            out[parts[0]] = int(parts[1])
    return out


def _try_write(path: str, value: str) -> None:
    with contextlib.suppress(OSError):
        _write(path, value)
