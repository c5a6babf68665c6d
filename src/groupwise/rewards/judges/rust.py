"""Rust rewards' engine: rustc run directly in the sandbox, one private build dir per sample.

``test``: the solution is compiled alone as a library crate (the tests are not in its sandbox); the tests,
rewritten by ``rust_tests`` so that only the solution's side of each assertion is in them, are compiled as a
second crate that depends on it (its source is piped to rustc, never on disk) and run; the host judges each
test from the values it printed against expected values it never saw. See docs/sandbox.md, "Rust tests".
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import re
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from groupwise.config.schema import DEFAULT_COMPILE_TIMEOUT_S
from groupwise.errors import GroupwiseError
from groupwise.rewards.judges import rust_tests as rt
from groupwise.rewards.judges.rust_lex import Value
from groupwise.rewards.judges.verdict import Verdict
from groupwise.sandbox import (
    BOX,
    SandboxLimits,
    SandboxResult,
    Slot,
    acquire_slot,
    check_not_root,
    run_sandboxed,
    runs_as_slot_uid,
)

log = logging.getLogger(__name__)
TARGET = "/target"  # the sample's private build dir inside the sandbox
HARNESS = "/gwharness"  # the prebuilt trusted harness library, read-only
_RUSTC_FLAGS = ["--edition", "2021", "-C", "debuginfo=0", "-C", "codegen-units=1", "--error-format=json"]
_CLIPPY_FLAGS = ["-F", "clippy::all", "-F", "warnings", "-F", "forbidden_lint_groups"]
_OVERRULED = "incompatible with previous forbid"
_NOT_BUILT = 97  # the test program's sandbox exits with this when rustc rejected the test crate
_RUN_LIMIT_CODES = (128 + 9, 128 + 24)  # timeout's SIGKILL, RLIMIT_CPU's SIGXCPU
_ABORTED = (128 + 6, -6)  # SIGABRT, seen through bubblewrap or directly
_OUT_OF_MEMORY = re.compile(r"memory allocation of \d+ bytes failed")  # Rust's message before that abort


@dataclass(frozen=True)
class RustToolchain:
    """Where cargo and rustc live (a rustup toolchain dir or the system's)."""

    sysroot: str
    cargo: str
    rustc: str

    def env(self) -> dict[str, str]:
        """The environment for rustc inside the sandbox."""
        return {"PATH": f"{os.path.dirname(self.rustc)}:/usr/local/bin:/usr/bin:/bin", "HOME": BOX}

    @property
    def clippy_driver(self) -> str:
        """The clippy driver next to rustc (a rustc that runs clippy's lints)."""
        return os.path.join(os.path.dirname(self.rustc), "clippy-driver")


@lru_cache(maxsize=1)
def find_toolchain() -> RustToolchain:
    """Locate the Rust toolchain (rustup proxies resolved to the real binaries) or raise GroupwiseError."""
    rustc = shutil.which("rustc")
    if shutil.which("cargo") is None or rustc is None:
        raise GroupwiseError("cargo/rustc are not installed, so Rust rewards cannot run",
                             "install Rust (https://rustup.rs) and put cargo on PATH")
    try:
        sysroot = subprocess.run([rustc, "--print", "sysroot"], capture_output=True, text=True, check=True,
                                 timeout=60).stdout.strip()
    except (OSError, subprocess.SubprocessError) as err:
        raise GroupwiseError(f"rustc does not run: {err}",
                             "check the Rust installation (rustc --version)") from err
    bindir = Path(sysroot) / "bin"
    cargo = bindir / "cargo"
    if not cargo.exists():
        cargo = Path(os.path.realpath(shutil.which("cargo") or "cargo"))
    return RustToolchain(sysroot, str(cargo), str(bindir / "rustc"))


@lru_cache(maxsize=1)
def has_clippy() -> bool:
    """Whether clippy (``clippy-driver``) is installed for the toolchain."""
    try:
        driver = find_toolchain().clippy_driver
        return subprocess.run([driver, "--version"], capture_output=True, timeout=60).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def default_target_dir() -> Path:
    """Where the per-sample build dirs go: $XDG_CACHE_HOME (or ~/.cache)/groupwise/rust-target."""
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache) / "groupwise" / "rust-target"


def limit_hit(result: SandboxResult) -> bool:
    """Whether a sandbox limit stopped the run (``SandboxResult.limit_hit`` where the sandbox has it), counting
    a Rust program that aborted because an allocation failed under the memory limit."""
    return (bool(getattr(result, "limit_hit", result.timed_out or result.killed))
            or result.returncode in _ABORTED and _OUT_OF_MEMORY.search(result.stderr) is not None)


def _diagnostics(text: str) -> list[dict[str, Any]]:
    out = []
    for line in text.splitlines():
        if line.startswith("{"):
            try:
                message = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(message, dict) and message.get("$message_type", "diagnostic") == "diagnostic":
                out.append(message)
    return out


def _lint_name(message: dict[str, Any]) -> str | None:
    code = (message.get("code") or {}).get("code")
    return code if isinstance(code, str) and not (code[:1] == "E" and code[1:].isdigit()) else None


def count_lints(stderr: str) -> int | None:
    """Lints reported by clippy run with ``-F`` (each one an error), or None when the crate does not compile.

    A source that tries to lower a forbidden lint (``#[allow]``, ``#[expect]``) counts as not compiling.
    """
    count = 0
    for message in _diagnostics(stderr):
        level, spans = message.get("level"), message.get("spans")
        if _OVERRULED in str(message.get("message", "")):
            return None
        if level in ("error", "warning") and spans:
            if _lint_name(message) is not None:
                count += 1
            elif level == "error":
                return None
    return count


_HARNESS_LOCK = threading.Lock()


@lru_cache(maxsize=4)
def _harness_lib(rustc: str) -> str:
    """The dir holding ``libgwharness.rlib``, built once per process (trusted code, no solution)."""
    with _HARNESS_LOCK:
        path = tempfile.mkdtemp(prefix="groupwise-rust-harness-")
        atexit.register(shutil.rmtree, path, True)
        source = resources.files("groupwise.rewards.judges").joinpath("templates", "gwharness.rs").read_text()
        built = subprocess.run([rustc, *_RUSTC_FLAGS, "-O", "--crate-type", "rlib", "--crate-name", "gwharness",
                                "-", "--out-dir", path], input=source, capture_output=True, text=True, timeout=300)
        if built.returncode != 0:
            raise GroupwiseError(f"the Rust test harness does not compile: {built.stderr[-500:]}",
                                 "check the Rust installation (rustc --version)")
        os.chmod(path, 0o755)
        return path


class RustRunner:
    """Builds and tests Rust samples; each sample gets a fresh build dir under ``target_dir``."""

    def __init__(self, limits: SandboxLimits, target_dir: str | os.PathLike[str] | None = None,
                 compile_timeout_s: float = DEFAULT_COMPILE_TIMEOUT_S) -> None:
        self.toolchain = find_toolchain()
        self.limits = limits
        self.root = Path(target_dir) if target_dir is not None else default_target_dir()
        check_not_root([self.toolchain.rustc, self.toolchain.sysroot, str(self.root)],  # at startup
                          "the Rust toolchain and its build dir (params.target_dir)")
        self.compile_limits = replace(limits, timeout_s=compile_timeout_s, cpu_s=max(1, int(compile_timeout_s)),
                                      memory_mb=max(limits.memory_mb, 1024),
                                      max_processes=max(limits.max_processes, 256),
                                      max_output_kb=max(limits.max_output_kb, 1024))
        self.run_limits = replace(limits, max_processes=max(limits.max_processes, 32),
                                  max_output_kb=max(limits.max_output_kb, 1024))
        self._expected: dict[tuple[str, ...], dict[tuple[int, int], list[Value]]] = {}
        self._locks: dict[tuple[str, ...], threading.Lock] = {}
        self._lock = threading.Lock()
        self._warned = False  # about a test that cannot be judged by value: once per run

    @contextmanager
    def _build_dir(self) -> Iterator[tuple[Slot, str]]:
        """A slot and a fresh build dir owned by the uid its programs run as; removed afterwards."""
        self.root.mkdir(parents=True, exist_ok=True)
        with acquire_slot() as slot:
            path = tempfile.mkdtemp(prefix="sample-", dir=self.root)
            try:
                if runs_as_slot_uid(slot, self.toolchain.rustc, [self.toolchain.sysroot]):
                    os.chown(path, slot.uid, slot.gid)
                yield slot, path
            finally:
                shutil.rmtree(path, ignore_errors=True)

    def _harness_dir(self) -> str:
        return _harness_lib(self.toolchain.rustc)

    def _rustc(self, slot: Slot, build: str, args: list[str], files: dict[str, str] | None = None,
               source: str | None = None, driver: str | None = None) -> SandboxResult:
        """rustc (or clippy) on ``/box/lib.rs`` or on ``source`` piped through stdin (never on disk)."""
        return run_sandboxed([driver or self.toolchain.rustc, *_RUSTC_FLAGS, *args], files or {},
                             self.compile_limits, extra_ro_binds=[self.toolchain.sysroot], slot=slot,
                             writable_dirs=[(build, TARGET)], env=self.toolchain.env(), stdin=source)

    def test(self, code: str, tests: Sequence[str]) -> Verdict:
        """Build the solution, then the tests against it, run them, and judge each from its values."""
        plan = rt.plan_tests(tests)
        evaluated = self._expected_values(plan)
        judged = rt.witnesses(plan, evaluated)
        self._warn_once(plan, evaluated)
        unjudgeable = len(rt.unjudgeable_tests(plan, judged))
        with self._build_dir() as (slot, build):
            lib = self._rustc(slot, build, ["--crate-type", "rlib", "--crate-name", "solution", "-A", "warnings",
                                            f"{BOX}/lib.rs", "--out-dir", TARGET], {"lib.rs": code})
            if not lib.ok:
                return Verdict(0, len(tests), limit_hit=limit_hit(lib), tests_unjudgeable=unjudgeable)
            ran = self._build_and_run(slot, build, rt.harness_source(plan, judged))
        if ran.returncode == _NOT_BUILT:
            return Verdict(0, len(tests), limit_hit=limit_hit(ran), tests_unjudgeable=unjudgeable)
        return rt.judge(plan, judged, ran.stdout, limit_hit(ran) or ran.returncode in _RUN_LIMIT_CODES)

    def _warn_once(self, plan: rt.Plan, evaluated: dict[tuple[int, int], list[Value]]) -> None:
        """Name the first test that no value can judge (it scores 0 for every solution); later ones are only
        counted, in ``reward/code_tests/tests_unjudgeable``."""
        reasons = rt.unjudged(plan, evaluated)
        with self._lock:
            if not reasons or self._warned:
                return
            self._warned = True
        test, why = min(reasons.items())
        log.warning("rust tests: the test %r cannot be judged by value (%s), so it scores 0 for every solution; "
                    "compare the solution's result with a value instead (assert_eq!(f(x), 3)). Tests like it are "
                    "counted in reward/code_tests/tests_unjudgeable, without another warning", plan.tests[test], why)

    def _build_and_run(self, slot: Slot, build: str, source: str) -> SandboxResult:
        """One sandbox: rustc builds the test program (source on stdin) into /box, then it runs, run-limited.

        The solution's build dir is read-only here; the program runs with the run limits (``ulimit``,
        ``timeout``), so what it writes stays in the sandbox's own size-capped dirs.
        """
        run = self.run_limits
        script = (f'bin="$1"; shift; "$@" || exit {_NOT_BUILT}; ulimit -t {int(run.cpu_s)}; '
                  f'ulimit -v {run.memory_mb * 1024}; exec timeout -s KILL {run.timeout_s:g} "$bin" </dev/null')
        rustc = [self.toolchain.rustc, *_RUSTC_FLAGS, "--crate-name", "gwtests", "--extern", "solution", "-L",
                 TARGET, "--extern", "gwharness", "-L", HARNESS, "-", "-o", f"{BOX}/gwtests"]
        limits = replace(self.compile_limits, timeout_s=self.compile_limits.timeout_s + run.timeout_s,
                         cpu_s=self.compile_limits.cpu_s + run.cpu_s)
        return run_sandboxed(["/bin/sh", "-c", script, "sh", f"{BOX}/gwtests", *rustc], {}, limits,
                             extra_ro_binds=[self.toolchain.sysroot, (self._harness_dir(), HARNESS),
                                             (build, TARGET)], slot=slot, env=self.toolchain.env(), stdin=source)

    def _expected_values(self, plan: rt.Plan) -> dict[tuple[int, int], list[Value]]:
        """The expected sides that are not plain literals, evaluated once per set of tests."""
        with self._lock:
            if plan.tests in self._expected:
                return self._expected[plan.tests]
            lock = self._locks.setdefault(plan.tests, threading.Lock())
        with lock:
            with self._lock:
                if plan.tests in self._expected:
                    return self._expected[plan.tests]
            values = self._evaluate(rt.expected_candidates(plan))
            with self._lock:
                if len(self._expected) > 4096:
                    self._expected.clear()
                    self._locks = {plan.tests: lock}
                self._expected[plan.tests] = values
        return values

    def _evaluate(self, candidates: dict[tuple[int, int], str]) -> dict[tuple[int, int], list[Value]]:
        """Compile the candidates without the solution (dropping those that do not compile) and run them."""
        with self._build_dir() as (slot, build):
            for _ in range(3):
                if not candidates:
                    return {}
                source, spans = rt.expected_source(candidates)
                built = self._rustc(slot, build, ["--crate-name", "expected", "-", "-o", f"{TARGET}/expected"],
                                    source=source)
                if built.ok:
                    ran = run_sandboxed([f"{TARGET}/expected"], {}, self.run_limits,
                                        extra_ro_binds=[(build, TARGET)], slot=slot)
                    return rt.read_expected(ran.stdout, candidates)
                lines = {span["line_start"] for m in _diagnostics(built.stderr) if m.get("level") == "error"
                         for span in m.get("spans", []) if span.get("is_primary")}
                bad = {key for key, (first, last) in spans.items() if any(first <= n <= last for n in lines)}
                if not bad or limit_hit(built):
                    break
                candidates = {key: expr for key, expr in candidates.items() if key not in bad}
        return {}

    def compiles(self, code: str) -> bool:
        """Whether rustc type-checks the crate (``--emit=metadata``, like ``cargo check``)."""
        with self._build_dir() as (slot, build):
            result = self._rustc(slot, build, ["--crate-type", "lib", "--crate-name", "solution", "-A", "warnings",
                                               "--emit=metadata", f"{BOX}/lib.rs", "--out-dir", TARGET],
                                 {"lib.rs": code})
        return result.ok

    def clippy_warnings(self, code: str) -> int | None:
        """How many lints clippy reports with every lint forbidden (None when the crate does not compile)."""
        with self._build_dir() as (slot, build):
            result = self._rustc(slot, build, ["--crate-type", "lib", "--crate-name", "solution", *_CLIPPY_FLAGS,
                                               "--emit=metadata", f"{BOX}/lib.rs", "--out-dir", TARGET],
                                 {"lib.rs": code}, driver=self.toolchain.clippy_driver)
        if limit_hit(result):
            return None
        return count_lints(result.stderr)
