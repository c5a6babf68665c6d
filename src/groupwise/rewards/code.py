"""Code rewards: run the completion's last code block against the row's tests, or build/lint it (Rust)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from groupwise.data.tests_column import InvalidTestsError, parse_tests
from groupwise.errors import GroupwiseError
from groupwise.rewards.extract import completion_text, extract_code
from groupwise.rewards.pyexec import run_python_test
from groupwise.rewards.registry import register_reward
from groupwise.rewards.rust import RustRunner, has_clippy
from groupwise.rewards.sandbox import SandboxLimits, ensure_isolation, sandbox_limits

LANGUAGES = ("python", "rust")


def _as_tests(value: Any) -> list[str] | None:
    """One row's ``tests`` (a list, a JSON or Python list string, or one test string), None when empty."""
    try:
        tests = parse_tests(value, single=True)
    except InvalidTestsError as err:
        raise GroupwiseError(f"code_tests got a 'tests' value that {err}",
                             "give tests as a list of test statements (docs/data.md)") from err
    return tests or None


def _check_workers(workers: int) -> int:
    if not isinstance(workers, int) or workers < 1:
        raise GroupwiseError(f"code reward workers must be a positive integer, got {workers!r}",
                             "set params.workers to 1 or more")
    return workers


def _limits(sandbox: dict[str, Any] | SandboxLimits | None) -> SandboxLimits:
    limits = sandbox_limits(sandbox)
    ensure_isolation(limits)  # a missing bwrap with require: true fails at startup, not mid-training
    return limits


def _map(fn: Callable[..., Any], items: Sequence[Any], workers: int) -> list[Any]:
    if not items:
        return []
    with ThreadPoolExecutor(max_workers=min(workers, len(items))) as pool:
        return list(pool.map(lambda args: fn(*args), items))


def _python_scores(codes: list[str | None], tests: list[list[str] | None], limits: SandboxLimits,
                   workers: int) -> list[float | None]:
    """Every (sample, test) pair is one sandboxed process; all pairs share one pool."""
    jobs = [(i, code, test) for i, (code, ts) in enumerate(zip(codes, tests, strict=True))
            if code is not None and ts for test in ts]
    passed = _map(lambda _i, code, test: run_python_test(code, test, limits), jobs, workers)
    counts = [0] * len(codes)
    for (i, _, _), ok in zip(jobs, passed, strict=True):
        counts[i] += bool(ok)
    return [None if not ts else (counts[i] / len(ts) if codes[i] is not None else 0.0)
            for i, ts in enumerate(tests)]


def _rust_scores(runner: RustRunner, codes: list[str | None], tests: list[list[str] | None],
                 workers: int) -> list[float | None]:
    jobs = [(code, ts) for code, ts in zip(codes, tests, strict=True) if code is not None and ts]
    results = iter(_map(runner.test, jobs, workers))
    return [None if not ts else (next(results) if code is not None else 0.0)
            for code, ts in zip(codes, tests, strict=True)]


@register_reward("code_tests")
def make_code_tests(language: str = "python", sandbox: dict[str, Any] | None = None, workers: int = 4,
                    target_dir: str | None = None, compile_timeout_s: float = 120.0) -> Callable[..., list]:
    """Fraction of the row's ``tests`` that the completion's code passes, each run sandboxed."""
    if language not in LANGUAGES:
        raise GroupwiseError(f"code_tests language '{language}' is not supported", "use python or rust")
    limits, workers = _limits(sandbox), _check_workers(workers)
    runner = RustRunner(limits, target_dir, compile_timeout_s) if language == "rust" else None

    def code_tests(prompts: Sequence[Any], completions: Sequence[Any], completion_ids: Any = None,
                   tests: Sequence[Any] | None = None, **_: Any) -> list[float | None]:
        if tests is None:
            raise GroupwiseError("code_tests needs a 'tests' column in the data",
                                 "give every row a list of test strings under 'tests'")
        codes = [extract_code(completion_text(c), language) for c in completions]
        rows = [_as_tests(t) for t in tests]
        if runner is not None:
            return _rust_scores(runner, codes, rows, workers)
        return _python_scores(codes, rows, limits, workers)

    return code_tests


@register_reward("rust_compiles")
def make_rust_compiles(sandbox: dict[str, Any] | None = None, workers: int = 4, target_dir: str | None = None,
                       compile_timeout_s: float = 120.0) -> Callable[..., list]:
    """1.0 when the completion's Rust code passes ``cargo check``, else 0.0."""
    runner = RustRunner(_limits(sandbox), target_dir, compile_timeout_s)
    workers = _check_workers(workers)

    def rust_compiles(prompts: Sequence[Any], completions: Sequence[Any], completion_ids: Any = None,
                      **_: Any) -> list[float]:
        codes = [extract_code(completion_text(c), "rust") for c in completions]
        ok = _map(runner.compiles, [(c,) for c in codes if c is not None], workers)
        results = iter(ok)
        return [float(next(results)) if c is not None else 0.0 for c in codes]

    return rust_compiles


@register_reward("rust_clippy")
def make_rust_clippy(sandbox: dict[str, Any] | None = None, workers: int = 4, target_dir: str | None = None,
                     compile_timeout_s: float = 120.0) -> Callable[..., list]:
    """1 / (1 + clippy warnings) when the Rust code compiles, else 0.0."""
    runner = RustRunner(_limits(sandbox), target_dir, compile_timeout_s)
    workers = _check_workers(workers)
    if not has_clippy():
        raise GroupwiseError("cargo clippy is not installed, so rust_clippy cannot run",
                             "install it: rustup component add clippy")

    def rust_clippy(prompts: Sequence[Any], completions: Sequence[Any], completion_ids: Any = None,
                    **_: Any) -> list[float]:
        codes = [extract_code(completion_text(c), "rust") for c in completions]
        counts = iter(_map(runner.clippy_warnings, [(c,) for c in codes if c is not None], workers))
        scores = []
        for code in codes:
            warnings = next(counts) if code is not None else None
            scores.append(0.0 if warnings is None else 1.0 / (1.0 + warnings))
        return scores

    return rust_clippy
