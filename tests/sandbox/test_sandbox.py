"""Hostile programs in the sandbox: each is contained within its limits, the host unchanged, runs go on."""

from __future__ import annotations

import logging
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from pathlib import Path

import pytest

from groupwise.config.schema import SandboxConfig
from groupwise.errors import GroupwiseError
from groupwise.rewards import resolve_reward
from groupwise.rewards.judges.pyexec import python_interpreter
from groupwise.sandbox import box as sb

needs_bwrap = pytest.mark.skipif(not sb.bwrap_available(), reason="bubblewrap does not work here")
IS_ROOT = os.geteuid() == 0
MEMORY_BOMB = "chunks = []\nwhile True:\n    chunks.append(bytearray(16 * 1024 * 1024))\n"


def run_py(code: str, **limits: object) -> sb.SandboxResult:
    binary, binds = python_interpreter()
    return sb.run_sandboxed([binary, "-I", "-B", "main.py"], {"main.py": code}, sb.SandboxLimits(**limits),
                            extra_ro_binds=binds)


def sandbox_pids() -> list[int]:
    """Live processes running as one of the sandbox uids (only meaningful when we are root). Zombies do not
    count: an orphan whose parent was killed is reaped by init, on its own schedule."""
    pids = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                uid = entry.stat().st_uid
                state = Path(entry.path, "stat").read_text().rpartition(")")[2].split()[0]
            except (OSError, IndexError):
                continue
            if sb._UID_BASE <= uid < sb._UID_BASE + sb._POOL_SIZE and state != "Z":
                pids.append(int(entry.name))
    return pids


def processes_with(marker: str) -> list[int]:
    found = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                cmdline = Path(entry.path, "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if marker in cmdline:
                found.append(int(entry.name))
    return found


@pytest.fixture
def no_bwrap(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pretend bubblewrap is missing: the rlimits-only fallback."""
    monkeypatch.setattr(sb, "_PROBE", sb._Probe(done=True, ok=False, reason="disabled by the test"))


def test_limits_accept_the_config_section() -> None:
    limits = sb.sandbox_limits(SandboxConfig().model_dump())
    assert limits == sb.SandboxLimits()
    with pytest.raises(GroupwiseError, match="unknown sandbox settings"):
        sb.sandbox_limits({"timeout": 3})


@needs_bwrap
def test_runs_code_in_a_fresh_work_dir_as_an_unprivileged_user() -> None:
    result = run_py("import os\nprint(os.getcwd(), os.getuid(), sorted(os.listdir('.')))\n")
    assert result.ok and result.sandboxed, result.stderr
    cwd, uid, files = result.stdout.split(maxsplit=2)
    assert cwd == sb.BOX and files.strip() == "['main.py']"
    assert int(uid) != 0


@needs_bwrap
def test_files_and_stdin_reach_the_program() -> None:
    binary, binds = python_interpreter()
    result = sb.run_sandboxed([binary, "-I", "-B", "main.py"],
                              {"main.py": "import sys\nprint(open('sub/x.txt').read(), sys.stdin.read())",
                               "sub/x.txt": "file"}, sb.SandboxLimits(), extra_ro_binds=binds, stdin="input")
    assert result.ok and result.stdout.split() == ["file", "input"]


@needs_bwrap
@pytest.mark.slow
def test_infinite_loop_is_killed_at_the_wall_clock_limit() -> None:
    result = run_py("while True:\n    pass\n", timeout_s=2, cpu_s=30)
    assert result.timed_out and result.killed and not result.ok
    assert result.duration_s < 15  # killed at 2 s; the margin absorbs a busy 2-core machine (cpu_s is 30)
    assert not sandbox_pids()


@pytest.mark.parametrize("chain", [True, False], ids=["prlimit-chain", "preexec"])
def test_rlimits_reach_the_program(chain: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """Set by a shell + prlimit chain in front of the program (so Popen can vfork), or by the preexec fallback
    where prlimit is missing: either way the program sees the same limits."""
    from groupwise.sandbox import process as _proc

    if not chain:
        monkeypatch.setattr(_proc, "_PRLIMIT", None)
    elif _proc._PRLIMIT is None:
        pytest.skip("prlimit (util-linux) is not installed")
    result = sb.run_sandboxed(["/bin/sh", "-c", "ulimit -t; ulimit -n; ulimit -c; ulimit -v"], {},
                              sb.SandboxLimits(cpu_s=7, memory_mb=300))
    assert result.ok, result.stderr
    assert result.stdout.split() == ["7", "1024", "0", str(300 * 1024)]  # ulimit -v is in KiB


@needs_bwrap
def test_cpu_limit_kills_a_busy_loop() -> None:
    result = run_py("while True:\n    pass\n", timeout_s=30, cpu_s=1)
    assert not result.ok and not result.timed_out
    assert result.duration_s < 20  # 1 CPU-second; the wall-clock limit (30 s) did not have to act


@needs_bwrap
@pytest.mark.slow
@pytest.mark.skipif(not IS_ROOT, reason="a dedicated sandbox uid (for RLIMIT_NPROC) needs root")
def test_fork_bomb_is_contained_and_host_stays_responsive() -> None:
    bomb = "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n"
    box: dict[str, sb.SandboxResult] = {}
    runner = threading.Thread(target=lambda: box.setdefault("r", run_py(bomb, timeout_s=3, max_processes=32)))
    runner.start()
    time.sleep(1.0)
    latencies = []
    peak = 0
    while runner.is_alive():
        start = time.monotonic()
        subprocess.run(["/bin/true"], check=True)
        latencies.append(time.monotonic() - start)
        peak = max(peak, len(sandbox_pids()))
        time.sleep(0.2)
    runner.join()
    result = box["r"]
    assert result.timed_out and not result.ok
    assert result.duration_s < 15
    assert max(latencies) < 3.0, latencies  # /bin/true still starts: the host is not starved
    assert peak <= 40
    assert not sandbox_pids()


@needs_bwrap
def test_memory_bomb_fails_inside_its_limit() -> None:
    result = run_py(MEMORY_BOMB, memory_mb=256)
    assert not result.ok and not result.timed_out
    assert "MemoryError" in result.stderr or result.killed
    assert result.duration_s < 10


@needs_bwrap
def test_no_network_even_to_localhost() -> None:
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]
    try:
        code = ("import socket\ns = socket.socket()\ns.settimeout(2)\n"
                f"s.connect(('127.0.0.1', {port}))\nprint('CONNECTED')\n")
        result = run_py(code, timeout_s=10)
        assert not result.ok and "CONNECTED" not in result.stdout
        listener.settimeout(0.5)
        with pytest.raises(TimeoutError):
            listener.accept()
    finally:
        listener.close()


@needs_bwrap
def test_cannot_write_outside_the_work_dir(tmp_path: Path) -> None:
    targets = [Path.home() / f".groupwise-pwned-{uuid.uuid4().hex}", tmp_path / "pwned",
               Path(python_interpreter()[1][0]) / f"pwned-{uuid.uuid4().hex}"]
    code = "\n".join(f"try:\n    open({str(t)!r}, 'w').write('x')\nexcept OSError:\n    pass"
                     for t in targets)
    try:
        result = run_py(code + "\nopen('inside.txt', 'w').write('ok')\n")
        assert result.ok, result.stderr
        assert not any(t.exists() for t in targets)
    finally:
        for target in targets:
            target.unlink(missing_ok=True)


@needs_bwrap
def test_cannot_read_secrets_outside_the_work_dir(tmp_path: Path) -> None:
    secret = f"SECRET-{uuid.uuid4().hex}"
    home_dir = Path(tempfile.mkdtemp(prefix=".groupwise-secret-", dir=Path.home()))
    paths = [home_dir / "secret.txt", tmp_path / "secret.txt"]
    try:
        for path in paths:
            path.write_text(secret)
        code = "\n".join(f"try:\n    print(open({str(p)!r}).read())\nexcept OSError as e:\n    print(e)"
                         for p in paths)
        result = run_py(code)
        assert secret not in result.stdout + result.stderr
    finally:
        for path in paths:
            path.unlink(missing_ok=True)
        home_dir.rmdir()


@needs_bwrap
def test_huge_output_is_capped_and_returns_quickly() -> None:
    code = "import sys\nfor _ in range(100):\n    sys.stdout.write('x' * (1024 * 1024))\n"
    result = run_py(code, max_output_kb=64, timeout_s=20)
    assert len(result.stdout) <= 64 * 1024
    assert result.duration_s < 15  # under the 20 s limit: the cap stopped it, not the timer


@needs_bwrap
def test_daemon_child_does_not_outlive_the_run() -> None:
    marker = f"{time.time_ns() % 10**6}.{os.getpid() % 1000}"
    code = ("import os\nif os.fork() == 0:\n    os.setsid()\n    if os.fork() == 0:\n"
            f"        os.execv('/bin/sleep', ['sleep', '{marker}'])\n    os._exit(0)\nprint('parent done')\n")
    result = run_py(code, timeout_s=10)
    assert "parent done" in result.stdout
    assert result.duration_s < 9  # the run does not wait out the daemon (timeout 10 s)
    time.sleep(0.2)
    assert not processes_with(f"sleep {marker}")
    assert not sandbox_pids()


@needs_bwrap
def test_killing_its_parent_does_not_hurt_the_runner() -> None:
    result = run_py("import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\nimport time\ntime.sleep(30)\n",
                    timeout_s=3)
    assert not result.ok
    assert run_py("print('still fine')").stdout.strip() == "still fine"


@needs_bwrap
def test_hostile_battery_scores_zero_through_code_tests(tmp_path: Path) -> None:
    """Every hostile solution scores 0, and the batch ends within its budget."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]
    hostile = [
        "while True:\n    pass",
        "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass",
        "x = bytearray(8 * 1024 ** 3)",
        f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=1)",
        f"open({str(tmp_path / 'pwned')!r}, 'w').write('x')",
        "import sys\nfor _ in range(100):\n    sys.stdout.write('x' * (1024 * 1024))",
        "import os\nif os.fork() == 0:\n    os.setsid()\n    import time\n    time.sleep(60)",
        "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)",
    ]
    reward = resolve_reward("code_tests", {"sandbox": {"timeout_s": 3, "memory_mb": 512}, "workers": 4})
    completions = [f"```python\n{code}\n```" for code in hostile]
    start = time.monotonic()
    scores = reward([""] * len(hostile), completions, tests=[["assert solve() == 42"]] * len(hostile))
    elapsed = time.monotonic() - start
    listener.settimeout(0.2)
    with pytest.raises(TimeoutError):
        listener.accept()
    listener.close()
    assert scores == [0.0] * len(hostile)
    assert elapsed < 90  # each program has a 3 s limit; none may run to the 120 s reward timeout
    assert not (tmp_path / "pwned").exists()
    if IS_ROOT:
        assert not sandbox_pids()


@pytest.mark.slow
def test_fallback_kills_an_infinite_loop(no_bwrap: None) -> None:
    result = run_py("while True:\n    pass\n", timeout_s=2, cpu_s=30)
    assert not result.sandboxed
    assert result.timed_out and not result.ok
    assert result.duration_s < 15  # killed at 2 s; margin for a busy machine (cpu_s is 30)


def test_fallback_stops_a_memory_bomb(no_bwrap: None) -> None:
    result = run_py(MEMORY_BOMB, memory_mb=256)
    assert not result.sandboxed and not result.ok and not result.timed_out
    assert result.duration_s < 10


def test_fallback_runs_code_in_the_work_dir_and_warns_once(no_bwrap: None,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    binary, binds = python_interpreter()
    with caplog.at_level(logging.WARNING, logger="groupwise.sandbox.box"):
        for _ in range(2):
            result = sb.run_sandboxed([binary, "-I", "-B", "main.py"],
                                      {"main.py": "print(open('data.txt').read())", "data.txt": "here"},
                                      sb.SandboxLimits(), extra_ro_binds=binds)
            assert result.ok and result.stdout.strip() == "here"
    warnings = [r for r in caplog.records if "falling back to rlimits" in r.getMessage()]
    assert len(warnings) == 1


def test_fallback_scores_correct_code(no_bwrap: None) -> None:
    reward = resolve_reward("code_tests", {"sandbox": {"timeout_s": 5}})
    good = "```python\ndef add(a, b):\n    return a + b\n```"
    assert reward([""], [good], tests=[["assert add(1, 2) == 3", "assert add(1, 1) == 3"]]) == [0.5]


def test_require_without_bwrap_is_a_clear_error(no_bwrap: None) -> None:
    with pytest.raises(GroupwiseError, match="bubblewrap") as err:
        run_py("print(1)", require=True)
    assert "apt-get install -y bubblewrap" in str(err.value)
    with pytest.raises(GroupwiseError, match="sandbox.require: false"):
        resolve_reward("code_tests", {"sandbox": {"require": True}})


@pytest.mark.skipif(not IS_ROOT, reason="the uid drop of the fallback happens only when groupwise is root")
def test_fallback_as_root_runs_code_as_the_slots_uid_and_kill_all_reaches_only_it(no_bwrap: None) -> None:
    bystander = subprocess.Popen(["sleep", "60"])  # a host process of ours that kill(-1) would hit as root
    try:
        result = run_py("import os, signal\nprint(os.getuid(), os.geteuid())\nos.kill(-1, signal.SIGKILL)\n")
        uids = [int(u) for u in result.stdout.split()]
        assert len(uids) == 2 and all(sb._UID_BASE <= u < sb._UID_BASE + sb._POOL_SIZE for u in uids)
        assert bystander.poll() is None  # still alive: the program could only signal its own uid
    finally:
        bystander.kill()
        bystander.wait()
    assert not sandbox_pids()


@pytest.mark.skipif(not IS_ROOT, reason="only root could run a program that an unprivileged uid cannot reach")
def test_fallback_as_root_refuses_a_program_only_root_can_reach(no_bwrap: None) -> None:
    hidden = Path(tempfile.mkdtemp(dir="/var/tmp"))  # not under /tmp, which the fallback maps to the box's
    try:
        hidden.chmod(0o700)
        tool = hidden / "tool"
        tool.write_text("#!/bin/sh\nid -u\n")
        tool.chmod(0o755)
        with pytest.raises(GroupwiseError, match="will not run model-written code as root") as err:
            sb.run_sandboxed([str(tool)], {}, sb.SandboxLimits())
        assert "apt-get install -y bubblewrap" in str(err.value)
        hidden.chmod(0o711)  # now the slot's uid can reach it: it runs, as that uid
        result = sb.run_sandboxed([str(tool)], {}, sb.SandboxLimits())
        assert result.ok and int(result.stdout) >= sb._UID_BASE
    finally:
        shutil.rmtree(hidden)


@pytest.mark.skipif(not IS_ROOT, reason="the interpreter choice matters only when the fallback drops to a uid")
def test_fallback_as_root_picks_an_interpreter_every_uid_can_run(no_bwrap: None) -> None:
    binary, binds = python_interpreter()
    assert sb.world_reachable([binary, *binds])
    result = sb.run_sandboxed([binary, "-I", "-S", "-c", "import sys; print(sys.version_info[:2])"], {},
                              sb.SandboxLimits(), extra_ro_binds=binds)
    assert result.ok and result.stdout.strip() == str(tuple(__import__("sys").version_info[:2]))
