"""Python tests in the sandbox: the solution and the test harness run as two separate sandboxed processes.

``run_python_tests`` (the default, see ``pyrpc``): one solution server and one harness per sample, joined by two
FIFOs in a host dir that both sandboxes see read-only. ``run_python_tests_in_process`` (``harness:
in_process``, see ``pyinproc``): each test in its own process together with the solution, for tests that need
real objects; weaker, documented in docs/sandbox.md.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path

from groupwise.rewards.judges import pyinproc, pyrpc
from groupwise.rewards.judges.verdict import Verdict
from groupwise.sandbox import (
    SandboxLimits,
    SandboxResult,
    Slot,
    acquire_slot,
    check_not_root,
    root_fallback,
    run_sandboxed,
    world_reachable,
)

CHANNEL = "/chan"  # where both sandboxes see the FIFO dir
_FLAGS = ("-I", "-S", "-B")  # isolated, no site-packages (stdlib only, 5x faster start), no .pyc writes
_DEFAULT_PATH = "/usr/local/bin:/usr/bin:/bin"  # where a system interpreter of our version is looked for
_PAIR = threading.Lock()  # two slots per sample, taken together: no hold-and-wait between samples


def python_interpreter() -> tuple[str, tuple[str, ...]]:
    """The real interpreter binary (not the venv shim: no site-packages) and the dirs to bind for it.

    Root without bubblewrap: the sandbox runs programs as an unprivileged uid, so when ours sits where that
    uid cannot reach (a pyenv under a 0700 /root) take the system's interpreter of the same version instead;
    with none, raise (``check_not_root``): model code never runs as root.
    """
    return _interpreter(root_fallback())


@lru_cache(maxsize=2)
def _interpreter(unprivileged: bool) -> tuple[str, tuple[str, ...]]:
    binary = os.path.realpath(sys.executable)
    binds = tuple(dict.fromkeys([sys.base_prefix, os.path.dirname(binary)]))
    if not unprivileged or world_reachable([binary, *binds]):
        return binary, binds
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    system = shutil.which(version, path=_DEFAULT_PATH)
    if system is not None and world_reachable([os.path.realpath(system)]):
        real = os.path.realpath(system)
        return real, (os.path.dirname(os.path.dirname(real)),)
    check_not_root([binary, *binds], f"the Python interpreter ({version})")
    return binary, binds


@lru_cache(maxsize=2)
def _script(module: str) -> str:
    return Path(pyrpc.__file__ if module == "pyrpc" else pyinproc.__file__).read_text(encoding="utf-8")


def source_bytes(text: str) -> bytes:
    """UTF-8 for the sandbox; a lone surrogate stays an invalid byte sequence (a syntax error there)."""
    return text.encode("utf-8", errors="surrogatepass")


def limit_hit(result: SandboxResult) -> bool:
    """Whether a sandbox limit stopped the run (until ``SandboxResult.limit_hit`` exists)."""
    return bool(getattr(result, "limit_hit", result.timed_out or result.killed))


def sample_budget_s(limits: SandboxLimits) -> float:
    """Wall time for one sample's tests in total: each test gets ``timeout_s``, all of them twice that + 1 s."""
    return 2.0 * limits.timeout_s + 1.0


@dataclass(frozen=True)
class Round:
    """What one solution/harness pair decided: tests passed, tests judged, and how the solution ended."""

    passed: int
    judged: int
    not_run: bool
    limit: bool


def run_python_tests(code: str, tests: list[str], limits: SandboxLimits) -> Verdict:
    """Run ``tests`` against ``code``: the solution serves calls from a harness in another sandbox.

    A test that hangs costs only itself: after a time limit a fresh pair runs the tests after it, while the
    sample's budget lasts. An exit is not retried: the tests it left are not run."""
    end = time.monotonic() + sample_budget_s(limits)
    passed = start = 0
    limited = False
    while True:
        outcome = _round(code, tests[start:], limits, end - time.monotonic())
        passed, start, limited = passed + outcome.passed, start + outcome.judged, limited or outcome.limit
        again = outcome.limit and outcome.judged > 0 and start < len(tests) and end - time.monotonic() > 1.0
        if not again:
            ended_early = start < len(tests) or outcome.not_run and not outcome.limit  # an exit in the last test
            return Verdict(passed, len(tests), ended_early, limited)


def _round(code: str, tests: list[str], limits: SandboxLimits, budget: float) -> Round:
    binary, binds = python_interpreter()
    token = secrets.token_hex(16)
    request = json.dumps({"token": token, "tests": tests, "solution": code, "per_test_s": limits.timeout_s,
                          "budget_s": budget}, ensure_ascii=True)  # ascii: lone surrogates travel as escapes
    with _pair_of_slots() as (solution_slot, harness_slot), _channel(harness_slot) as chan:
        ro = (*binds, (str(chan), CHANNEL))
        argv = [binary, *_FLAGS, "pyrpc.py"]
        fifos = [f"{CHANNEL}/calls", f"{CHANNEL}/answers"]
        solution: list[SandboxResult | BaseException] = []

        def serve() -> None:
            try:
                solution.append(run_sandboxed(
                    [*argv, "serve", *fifos], {"pyrpc.py": _script("pyrpc"), "solution.py": source_bytes(code)},
                    replace(limits, timeout_s=budget + 2.0), extra_ro_binds=ro, slot=solution_slot))
            except BaseException as err:  # noqa: BLE001 - re-raised in the caller's thread
                solution.append(err)

        server = threading.Thread(target=serve, daemon=True)
        server.start()
        harness = run_sandboxed([*argv, "judge", *fifos], {"pyrpc.py": _script("pyrpc")},
                                replace(limits, timeout_s=budget + 1.0), extra_ro_binds=ro, stdin=request,
                                slot=harness_slot)
        server.join()
    if isinstance(solution[0], BaseException):
        raise solution[0]
    return harness_round(harness, solution[0], token, len(tests))


def harness_round(harness: SandboxResult, solution: SandboxResult, token: str, total: int) -> Round:
    """The verdict line the harness wrote (with our token); none means no test counts and none fully ran."""
    limited = limit_hit(harness) or limit_hit(solution)
    for line in reversed(harness.stdout.splitlines()):
        head, _, body = line.partition(" ")
        if head != token:
            continue
        try:
            found = json.loads(body)
            judged = min(max(int(found["judged"]), 0), total)
            passed = min(max(int(found["passed"]), 0), judged)
            return Round(passed, judged, bool(found["not_run"]), bool(found["limit"]) or limited)
        except (ValueError, KeyError, TypeError):
            break
    return Round(0, 0, True, limited)


def run_python_tests_in_process(code: str, tests: list[str], limits: SandboxLimits) -> Verdict:
    """The fallback: each test is one sandboxed process running the solution and that test together, within
    the sample's budget (the tests left when it runs out are not run)."""
    binary, binds = python_interpreter()
    end = time.monotonic() + sample_budget_s(limits)
    passed, not_run, limited = 0, False, False
    for test in tests:
        left = end - time.monotonic()
        if left < 0.5:
            return Verdict(passed, len(tests), True, True)
        token = secrets.token_hex(16)
        result = run_sandboxed([binary, *_FLAGS, "pyinproc.py"],
                               {"pyinproc.py": _script("pyinproc"), "solution.py": source_bytes(code),
                                "test.py": source_bytes(test)}, replace(limits, timeout_s=min(limits.timeout_s, left)),
                               extra_ro_binds=binds, stdin=token + "\n")
        lines = result.stdout.splitlines()
        passed += f"{token} pass" in lines
        not_run |= f"{token} pass" not in lines and f"{token} fail" not in lines
        limited |= limit_hit(result)
    return Verdict(passed, len(tests), not_run, limited)


@contextmanager
def _pair_of_slots() -> Iterator[tuple[Slot, Slot]]:
    with ExitStack() as stack:
        with _PAIR:
            first = stack.enter_context(acquire_slot())
            second = stack.enter_context(acquire_slot())
        yield first, second


@contextmanager
def _channel(harness: Slot) -> Iterator[Path]:
    """A dir with the two FIFOs: the harness (owner) writes calls and reads answers; others only the reverse."""
    chan = Path(tempfile.mkdtemp(prefix="groupwise-chan-"))
    try:
        chan.chmod(0o711)
        calls, answers = chan / "calls", chan / "answers"
        os.mkfifo(calls, 0o600)
        os.mkfifo(answers, 0o600)
        if harness.dedicated:
            for fifo in (calls, answers):
                os.chown(fifo, harness.uid, harness.gid)
            calls.chmod(0o604)  # owner (harness) rw, others read
            answers.chmod(0o602)  # owner (harness) rw, others write
        else:
            calls.chmod(0o600)
            answers.chmod(0o600)
        yield chan
    finally:
        shutil.rmtree(chan, ignore_errors=True)
