"""Rust rewards' engine: an offline cargo crate per sample, built in the sandbox with a per-slot target dir.

Samples on the same slot reuse one ``CARGO_TARGET_DIR`` (cargo's rustc-info cache, incremental state), and
each crate sits at the same path (``/box``) so it is the same package to cargo from one sample to the next.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, replace
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from groupwise.errors import GroupwiseError
from groupwise.rewards import sandbox as sb
from groupwise.rewards.sandbox import BOX, SandboxLimits, SandboxResult, Slot, acquire_slot, run_sandboxed

TARGET = "/target"
_TEST_LINE = re.compile(r"^test tests::t(\d+) \.\.\. ok$", re.M)


@dataclass(frozen=True)
class RustToolchain:
    """Where cargo and rustc live (a rustup toolchain dir or the system's)."""

    sysroot: str
    cargo: str
    rustc: str

    def env(self, **extra: str) -> dict[str, str]:
        """The environment for cargo inside the sandbox (offline, no colour, a fresh CARGO_HOME)."""
        bindir = os.path.dirname(self.cargo)
        return {"PATH": f"{bindir}:/usr/local/bin:/usr/bin:/bin", "RUSTC": self.rustc,
                "CARGO_HOME": f"{BOX}/.cargo-home", "CARGO_TARGET_DIR": TARGET, "CARGO_NET_OFFLINE": "true",
                "CARGO_TERM_COLOR": "never", "CARGO_TERM_PROGRESS_WHEN": "never", **extra}


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
    """Whether ``cargo clippy`` is installed for the toolchain."""
    tc = find_toolchain()
    env = {**os.environ, "PATH": f"{os.path.dirname(tc.cargo)}:{os.environ.get('PATH', '')}"}
    try:
        return subprocess.run([tc.cargo, "clippy", "--version"], capture_output=True, env=env,
                              timeout=60).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


@lru_cache(maxsize=1)
def _template() -> tuple[str, str]:
    root = resources.files("groupwise.rewards").joinpath("templates", "rust_crate")
    return root.joinpath("Cargo.toml").read_text(), root.joinpath("src", "lib.rs").read_text()


def crate_files(code: str, tests: Sequence[str] = ()) -> dict[str, str]:
    """Cargo.toml and src/lib.rs: the solution, then ``#[test] fn tN`` per test statement."""
    manifest, lib = _template()
    body = "\n".join(f"    #[test]\n    fn t{i}() {{\n        {test.strip()}\n    }}\n"
                     for i, test in enumerate(tests))
    return {"Cargo.toml": manifest,
            "src/lib.rs": lib.replace("/*__SOLUTION__*/", code.rstrip()).replace("/*__TESTS__*/", body)}


def default_target_dir() -> Path:
    """The shared cargo target cache: $XDG_CACHE_HOME (or ~/.cache)/groupwise/rust-target."""
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache) / "groupwise" / "rust-target"


def _json_lines(text: str) -> list[dict[str, Any]]:
    out = []
    for line in text.splitlines():
        if line.startswith("{"):
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return out


class RustRunner:
    """Builds and tests Rust samples; one target dir per sandbox slot under ``target_dir``."""

    def __init__(self, limits: SandboxLimits, target_dir: str | os.PathLike[str] | None = None,
                 compile_timeout_s: float = 120.0) -> None:
        self.toolchain = find_toolchain()
        self.limits = limits
        self.root = Path(target_dir) if target_dir is not None else default_target_dir()
        self.compile_limits = replace(limits, timeout_s=max(compile_timeout_s, limits.timeout_s),
                                      cpu_s=max(int(compile_timeout_s), limits.cpu_s),
                                      memory_mb=max(limits.memory_mb, 4096),
                                      max_processes=max(limits.max_processes, 256),
                                      max_output_kb=max(limits.max_output_kb, 4096))
        self.run_limits = replace(limits, max_processes=max(limits.max_processes, 32))

    def _target(self, slot: Slot) -> str:
        path = self.root / f"slot-{slot.index}"
        path.mkdir(parents=True, exist_ok=True)
        as_slot = sb.runs_as_slot_uid(slot, self.toolchain.cargo, [self.toolchain.sysroot])
        uid, gid = (slot.uid, slot.gid) if as_slot else (os.geteuid(), os.getegid())
        if any(p.stat().st_uid != uid for p in [path, *path.glob("*"), *path.glob("debug/*")]):
            sb.chown_tree(path, uid, gid)  # left by a run as another uid (e.g. without bwrap): hand it over
        return str(path)

    def _cargo(self, slot: Slot, args: list[str], files: dict[str, str], **env: str) -> SandboxResult:
        return run_sandboxed([self.toolchain.cargo, *args, "--offline"], files, self.compile_limits,
                             extra_ro_binds=[self.toolchain.sysroot], slot=slot,
                             writable_dirs=[(self._target(slot), TARGET)], env=self.toolchain.env(**env))

    def test(self, code: str, tests: Sequence[str]) -> float:
        """Fraction of ``tests`` passing; 0.0 when the crate does not compile."""
        files = crate_files(code, tests)
        with acquire_slot() as slot:
            built = self._cargo(slot, ["test", "--lib", "--no-run", "--message-format=json"], files,
                                RUSTFLAGS="-A warnings")
            exe = next((m["executable"] for m in _json_lines(built.stdout)
                        if m.get("reason") == "compiler-artifact" and m.get("executable")), None)
            if not built.ok or exe is None:
                return 0.0
            binds = [self.toolchain.sysroot, (self._target(slot), TARGET)]
            ran = run_sandboxed([exe, "--color", "never", "--test-threads", "4"], files, self.run_limits,
                                extra_ro_binds=binds, slot=slot)
        passed = {int(i) for i in _TEST_LINE.findall(ran.stdout)}
        return len(passed & set(range(len(tests)))) / len(tests)

    def compiles(self, code: str) -> bool:
        """Whether ``cargo check`` of the crate succeeds."""
        with acquire_slot() as slot:
            result = self._cargo(slot, ["check", "--lib", "--quiet"], crate_files(code),
                                 RUSTFLAGS="-A warnings")
        return result.ok

    def clippy_warnings(self, code: str) -> int | None:
        """How many warnings ``cargo clippy`` reports (None when the crate does not compile)."""
        with acquire_slot() as slot:
            result = self._cargo(slot, ["clippy", "--lib", "--message-format=json"], crate_files(code))
        if not result.ok:
            return None
        return sum(1 for m in _json_lines(result.stdout) if m.get("reason") == "compiler-message"
                   and m.get("message", {}).get("level") == "warning" and m["message"].get("spans"))
