"""Python tests in the sandbox: each test is its own `python3 -I` process running the solution + the test."""

from __future__ import annotations

import os
import sys
from functools import lru_cache

from groupwise.rewards.sandbox import SandboxLimits, run_sandboxed

_SCRIPT = "main.py"


@lru_cache(maxsize=1)
def python_interpreter() -> tuple[str, tuple[str, ...]]:
    """The real interpreter binary (not the venv shim: no site-packages) and the dirs to bind for it."""
    binary = os.path.realpath(sys.executable)
    binds = tuple(dict.fromkeys([sys.base_prefix, os.path.dirname(binary)]))
    return binary, binds


def build_program(code: str, test: str) -> str:
    """The script one test runs: the solution, then the test snippet."""
    return f"{code.rstrip()}\n\n\n{test.strip()}\n"


def run_python_test(code: str, test: str, limits: SandboxLimits) -> bool:
    """Whether ``test`` passes against ``code`` (exit status 0 within the limits)."""
    binary, binds = python_interpreter()
    # -I: isolated (no env vars, no user site); -S: no site-packages either (stdlib only, 5x faster start)
    result = run_sandboxed([binary, "-I", "-S", "-B", _SCRIPT], {_SCRIPT: build_program(code, test)}, limits,
                           extra_ro_binds=binds)
    return result.ok
