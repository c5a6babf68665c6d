"""The hostile battery for the sandbox layer: limits per sandbox (cgroup), seccomp, cleanup, slots across
processes. Each attack fails within its limit and leaves the host as it was; with and without bubblewrap."""

from __future__ import annotations

import glob
import os
import platform
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest

from groupwise.rewards.judges.pyexec import python_interpreter
from groupwise.sandbox import box as sb
from groupwise.sandbox import cgroup as _cgroup
from groupwise.sandbox import seccomp as _seccomp
from groupwise.sandbox.files import remove_tree

IS_ROOT = os.geteuid() == 0
CGROUP = _cgroup.detect()[0]
needs_cgroup = pytest.mark.skipif(CGROUP is None, reason="no usable cgroup for sandboxes here")
needs_seccomp = pytest.mark.skipif(not _seccomp.available()[0], reason="libseccomp is not available")
SYSCALLS = {"x86_64": {"add_key": 248, "keyctl": 250, "socket": 41, "clone": 56},
            "aarch64": {"add_key": 217, "keyctl": 219, "socket": 198, "clone": 220}}.get(platform.machine(), {})
LIBC = "import ctypes, os\nlibc = ctypes.CDLL(None, use_errno=True)\n"


@pytest.fixture(params=["bwrap", "fallback"])
def mode(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every attack runs under bubblewrap and under the rlimits-only fallback (bubblewrap hidden)."""
    if request.param == "bwrap" and not sb.bwrap_available():
        pytest.skip("bubblewrap does not work here")
    if request.param == "fallback":
        monkeypatch.setattr(sb, "_PROBE", sb._Probe(done=True, ok=False, reason="disabled by the test",
                                                    warned=True, layers_warned=True))
    return request.param


def host_state() -> dict[str, list[str]]:
    """What a run could leave behind: work dirs, cgroups, processes of sandbox uids."""
    roots = ("/tmp", "/dev/shm", tempfile.gettempdir())
    dirs = [p for root in roots for p in glob.glob(f"{root}/groupwise-box-[0-9]*-*")]
    groups = [p for base in (CGROUP.bases.values() if CGROUP else ()) for p in glob.glob(f"{base}/{_cgroup.PREFIX}*")]
    procs = []
    if IS_ROOT:
        for entry in os.scandir("/proc"):
            try:
                if entry.name.isdigit() and sb._UID_BASE <= entry.stat().st_uid < sb._UID_BASE + sb._POOL_SIZE:
                    procs.append(entry.name)
            except OSError:
                continue
    return {"dirs": sorted(set(dirs)), "cgroups": sorted(groups), "procs": procs}


@pytest.fixture
def clean_host() -> object:
    """Asserts the host is as it was after the test (no dirs, cgroups or sandbox processes left)."""
    yield
    deadline = time.monotonic() + 3
    while (state := host_state()) != {"dirs": [], "cgroups": [], "procs": []} and time.monotonic() < deadline:
        time.sleep(0.05)
    assert state == {"dirs": [], "cgroups": [], "procs": []}


def run_py(code: str, **limits: object) -> sb.SandboxResult:
    binary, binds = python_interpreter()
    return sb.run_sandboxed([binary, "-I", "-S", "-B", "main.py"], {"main.py": textwrap.dedent(code)},
                            sb.SandboxLimits(**limits), extra_ro_binds=binds)


def test_a_deep_tree_is_removed_and_leaves_nothing(mode: str, clean_host: object) -> None:
    code = """
        import os, tempfile
        for top in (".", tempfile.gettempdir()):
            os.chdir(top)
            for _ in range(3000):
                os.mkdir("d")
                os.chdir("d")
            open("leaf", "w").write("x")
        print("BUILT")
    """
    result = run_py(code, timeout_s=20)
    assert "BUILT" in result.stdout, result.stderr
    assert result.ok and not result.limit_hit


def test_remove_tree_needs_no_recursion() -> None:
    tmp_path = Path(tempfile.mkdtemp(dir="/dev/shm" if os.path.isdir("/dev/shm") else None))
    fd = os.open(tmp_path, os.O_RDONLY)
    for _ in range(3000):  # deeper than the recursion limit and than PATH_MAX
        os.mkdir("d", dir_fd=fd)
        child = os.open("d", os.O_RDONLY, dir_fd=fd)
        os.close(fd)
        fd = child
    os.close(fd)
    (tmp_path / "link").symlink_to("/etc")
    assert remove_tree(str(tmp_path)) and not tmp_path.exists()
    assert Path("/etc/passwd").exists()


@needs_cgroup
def test_forked_children_and_tmp_share_one_memory_limit(mode: str, clean_host: object) -> None:
    """4 children x 60 MB + 60 MB in /tmp each fit a 128 MB rlimit, but not one 128 MB sandbox."""
    code = """
        import os, time
        MB = 1024 * 1024
        open(os.path.join(os.environ["TMPDIR"], "blob"), "wb").write(b"\\1" * 60 * MB)  # the box's /tmp
        ends = []
        for _ in range(4):
            r, w = os.pipe()
            if os.fork() == 0:
                held = b"\\2" * 60 * MB
                os.write(w, b"1")
                time.sleep(3)
                os._exit(0)
            os.close(w)
            ends.append(r)
        got = sum(len(os.read(r, 1)) for r in ends)
        print("ALL HELD" if got == 4 else f"held {got}")
    """
    result = run_py(code, memory_mb=128, timeout_s=15)
    assert "ALL HELD" not in result.stdout and result.limit_hit
    assert result.duration_s < 10


def test_box_has_a_total_size(mode: str, clean_host: object) -> None:
    if mode == "fallback" and CGROUP is None:
        pytest.skip("without bubblewrap the work dir is capped only by the cgroup")
    code = """
        for i in range(3):
            open(f"f{i}", "wb").write(b"\\1" * 56 * 1024 * 1024)  # each file fits RLIMIT_FSIZE, not all three
        print("WROTE ALL")
    """
    result = run_py(code, memory_mb=64, timeout_s=15)
    assert "WROTE ALL" not in result.stdout and not result.ok


@needs_cgroup
def test_cpu_time_is_limited_for_the_whole_tree(mode: str, clean_host: object) -> None:
    """4 children, each under cpu_s alone, are stopped together once the tree passes cpu_s."""
    code = """
        import os, time
        kids = [os.fork() for _ in range(4)]
        if 0 in kids:
            while time.process_time() < 0.7:
                pass
            os._exit(0)
        for _ in kids:
            os.wait()
        print("ALL DONE")
    """
    result = run_py(code, cpu_s=1, timeout_s=30)
    assert "ALL DONE" not in result.stdout and result.limit_hit and not result.timed_out
    assert result.duration_s < 8


@needs_seccomp
@pytest.mark.skipif(not SYSCALLS, reason="syscall numbers known for x86_64 and aarch64 only")
def test_keyring_is_closed_across_samples(mode: str, clean_host: object) -> None:
    add = LIBC + f"""
r = libc.syscall({SYSCALLS['add_key']}, b"user", b"gw-secret", b"42", 2, ctypes.c_long(-4))
print("ADD", r, ctypes.get_errno())
"""
    read = LIBC + f"""
r = libc.syscall({SYSCALLS['keyctl']}, 10, ctypes.c_long(-4), b"user", b"gw-secret", 0)
print("SEARCH", r, ctypes.get_errno())
"""
    assert run_py(add).stdout.split() == ["ADD", "-1", "1"]  # EPERM
    assert run_py(read).stdout.split() == ["SEARCH", "-1", "1"]


@needs_seccomp
def test_vsock_and_other_families_are_refused(mode: str, clean_host: object) -> None:
    code = LIBC + f"""
import socket
for family in (socket.AF_VSOCK, socket.AF_NETLINK, socket.AF_PACKET, 40 | (1 << 32)):
    r = libc.syscall({SYSCALLS.get('socket', 41)}, ctypes.c_long(family), 1, 0)
    print(r, ctypes.get_errno())
a, b = socket.socketpair()
print("UNIX OK")
"""
    result = run_py(code)
    lines = result.stdout.splitlines()
    assert lines[:4] == ["-1 97"] * 4 and lines[4] == "UNIX OK", result.stdout + result.stderr  # EAFNOSUPPORT


@needs_seccomp
def test_no_ip_sockets_without_bubblewrap(mode: str, clean_host: object) -> None:
    result = run_py("import socket\ntry:\n    socket.socket()\n    print('OPEN')\nexcept OSError as e:\n"
                    "    print(e.errno)\n")
    assert result.stdout.strip() == ("OPEN" if mode == "bwrap" else "97")  # bwrap: a netns with only lo


@needs_seccomp
@pytest.mark.skipif(not SYSCALLS, reason="syscall numbers known for x86_64 and aarch64 only")
def test_no_namespaces_and_no_mounts(mode: str, clean_host: object) -> None:
    code = LIBC + f"""
print("unshare", libc.unshare(0x10000000 | 0x00020000), ctypes.get_errno())
r = libc.syscall({SYSCALLS['clone']}, ctypes.c_long(0x10000000 | 17), 0, 0, 0, 0)
if r == 0:
    os._exit(0)
print("clone", r, ctypes.get_errno())
print("mount", libc.mount(b"none", b"/tmp", b"tmpfs", 0, None), ctypes.get_errno())
import subprocess
print("cmd", subprocess.run(["unshare", "-Ur", "true"], capture_output=True).returncode != 0)
"""
    assert run_py(code).stdout.split() == ["unshare", "-1", "1", "clone", "-1", "1", "mount", "-1", "1",
                                           "cmd", "True"]


@needs_seccomp
def test_no_ptrace(mode: str, clean_host: object) -> None:
    code = LIBC + """
import time
pid = os.fork()
if pid == 0:
    time.sleep(5)
    os._exit(0)
print(libc.ptrace(16, pid, 0, 0), ctypes.get_errno())
os.kill(pid, 9)
"""
    assert run_py(code).stdout.split() == ["-1", "1"]


def test_limit_hit_says_which_runs_a_limit_stopped(mode: str, clean_host: object) -> None:
    assert not run_py("print(1)").limit_hit
    assert not run_py("assert 1 == 2").limit_hit
    assert run_py("while True:\n    pass\n", timeout_s=1, cpu_s=30).limit_hit
    assert run_py("import sys\nsys.stdout.write('x' * 200_000)\n", max_output_kb=16).limit_hit
    assert run_py("x = bytearray(1 << 30)\n", memory_mb=128).limit_hit


def test_a_lone_surrogate_is_that_runs_failure(mode: str, clean_host: object) -> None:
    result = run_py("print('\ud800')\n")
    assert not result.ok
    binary, binds = python_interpreter()
    odd = sb.run_sandboxed([binary, "-c", "print(1)", "\ud800"], {}, sb.SandboxLimits(), extra_ro_binds=binds)
    assert not odd.ok and odd.returncode in (126, 127)


WORKER = """
import json, sys, time
from groupwise.sandbox import box as sb
from groupwise.rewards.judges.pyexec import python_interpreter
from concurrent.futures import ThreadPoolExecutor
binary, binds = python_interpreter()
def one(i):
    with sb.acquire_slot() as slot:
        start = time.time()
        r = sb.run_sandboxed([binary, "-I", "-S", "main.py"],
                             {"main.py": f"import time\\ntime.sleep(0.2)\\nprint({i} * 2)"},
                             sb.SandboxLimits(timeout_s=20), extra_ro_binds=binds, slot=slot)
        return slot.index, start, time.time(), r.ok and r.stdout.strip() == str(i * 2)
with ThreadPoolExecutor(3) as pool:
    print(json.dumps(list(pool.map(one, range(12)))))
"""


def test_two_processes_never_share_a_slot(clean_host: object) -> None:
    """Two reward processes at once: every run scores right (no cross-kills), no slot is used by both."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    procs = [subprocess.Popen([sys.executable, "-c", WORKER], stdout=subprocess.PIPE, text=True, env=env)
             for _ in range(2)]
    import json

    runs = [json.loads(p.communicate(timeout=120)[0]) for p in procs]
    assert all(ok for rows in runs for *_, ok in rows)
    for index, start, end, _ in runs[0]:
        for other, start2, end2, _ in runs[1]:
            assert index != other or end <= start2 or end2 <= start
