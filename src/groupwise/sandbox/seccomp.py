"""The sandbox's seccomp filter, built with libseccomp (its Python binding, or ``pyseccomp`` over ctypes).

Denied (EPERM unless noted): the kernel keyring, namespace creation and joining, ptrace, mounts, kernel
modules, BPF, perf events, kexec, io_uring, userfaultfd, file handles, and ``socket``/``socketpair`` of any
address family but AF_UNIX (EAFNOSUPPORT). AF_INET/AF_INET6 stay allowed under bubblewrap, whose network
namespace has only a loopback device; without bubblewrap they are denied too. ``clone3`` answers ENOSYS (its
flags sit in memory a filter cannot read), so the C library falls back to ``clone``, whose namespace flags
are checked. Syscalls of a foreign ABI (i386, x32) kill the process.
"""

from __future__ import annotations

import errno
import logging
import os
import threading
from functools import lru_cache
from types import ModuleType
from typing import Any

log = logging.getLogger(__name__)

DENIED = ("add_key", "request_key", "keyctl", "unshare", "setns", "ptrace", "process_vm_writev", "mount",
          "umount2", "pivot_root", "chroot", "fsopen", "fsconfig", "fsmount", "fspick", "move_mount",
          "open_tree", "mount_setattr", "init_module", "finit_module", "delete_module", "bpf",
          "perf_event_open", "kexec_load", "kexec_file_load", "userfaultfd", "open_by_handle_at",
          "name_to_handle_at", "io_uring_setup", "io_uring_enter", "io_uring_register", "swapon", "swapoff",
          "reboot", "syslog", "acct", "quotactl", "lookup_dcookie", "iopl", "ioperm", "settimeofday",
          "clock_settime", "clock_adjtime", "adjtimex")
CLONE_NEW_FLAGS = (0x00020000, 0x02000000, 0x04000000, 0x08000000, 0x10000000, 0x20000000, 0x40000000)
AF_UNIX, AF_INET, AF_INET6 = 1, 2, 10
_AF_MAX = 64  # families above this do not exist; one GT rule covers them (and values with high bits set)
_LOCK = threading.Lock()


@lru_cache(maxsize=1)
def binding() -> tuple[ModuleType | None, str]:
    """libseccomp's Python module, or None and why (imported once per process)."""
    try:
        import seccomp  # type: ignore[import-not-found]  # the official binding (Debian: python3-seccomp)

        return seccomp, ""
    except ImportError:
        pass
    try:
        import pyseccomp  # type: ignore[import-untyped]  # same API over ctypes (raises without libseccomp)

        return pyseccomp, ""
    except (ImportError, RuntimeError, OSError) as err:
        return None, f"no libseccomp binding ({err}); install libseccomp2 and pyseccomp"


def build_filter(allow_inet: bool) -> Any:
    """A libseccomp ``SyscallFilter`` (allow by default) with the denials above."""
    sc, reason = binding()
    if sc is None:
        raise RuntimeError(reason)
    filt = sc.SyscallFilter(defaction=sc.ALLOW)
    native = sc.system_arch()
    eperm = sc.ERRNO(errno.EPERM)
    for name in DENIED:
        if sc.resolve_syscall(native, name) >= 0:  # unknown on this architecture: nothing to deny
            filt.add_rule(eperm, name)
    filt.add_rule(sc.ERRNO(errno.ENOSYS), "clone3")
    for flag in CLONE_NEW_FLAGS:
        filt.add_rule(eperm, "clone", sc.Arg(0, sc.MASKED_EQ, flag, flag))
    allowed = {AF_UNIX, AF_INET, AF_INET6} if allow_inet else {AF_UNIX}
    no_family = sc.ERRNO(errno.EAFNOSUPPORT)
    for call in ("socket", "socketpair"):
        for family in range(_AF_MAX + 1):
            if family not in allowed:
                filt.add_rule(no_family, call, sc.Arg(0, sc.EQ, family))
        filt.add_rule(no_family, call, sc.Arg(0, sc.GT, _AF_MAX))
    return filt


@lru_cache(maxsize=2)
def bpf_program(allow_inet: bool) -> bytes | None:
    """The filter as a BPF program for ``bwrap --seccomp FD``, or None when libseccomp is unavailable."""
    with _LOCK:
        try:
            filt = build_filter(allow_inet)
            fd = os.memfd_create("groupwise-seccomp")
            with open(fd, "w+b") as out:
                filt.export_bpf(out)
                out.seek(0)
                return out.read()
        except (RuntimeError, OSError, ValueError) as err:
            log.debug("seccomp: cannot build the filter: %s", err)
            return None


@lru_cache(maxsize=1)
def loader() -> Any:
    """A ready filter whose ``load()`` applies it to the calling process (for the fallback's pre-exec step)."""
    with _LOCK:
        try:
            return build_filter(allow_inet=False)
        except (RuntimeError, OSError, ValueError) as err:
            log.debug("seccomp: cannot build the filter: %s", err)
            return None


def available() -> tuple[bool, str]:
    """Whether the filter can be built here, and if not why."""
    if binding()[0] is None:
        return False, binding()[1]
    if bpf_program(True) is None:
        return False, "libseccomp could not build the filter"
    return True, ""
