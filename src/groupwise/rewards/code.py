"""Code rewards: run the code a completion defines against the row's tests, or build/lint it (Rust).

One sample, one fate: whatever goes wrong while evaluating one sample (an exception, a bad encoding, a
failed cleanup) scores that sample 0, is logged, and is counted in ``reward/<function>/sample_errors``;
nothing escapes to the rest of the batch. Python's per-sample limits: see ``pyexec.sample_budget_s``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from groupwise.data.tests_column import InvalidTestsError, parse_tests
from groupwise.errors import GroupwiseError
from groupwise.rewards.extract import completion_text, extract_code, names_used_by_tests, with_prompt_code
from groupwise.rewards.judges.pyexec import python_interpreter, run_python_tests, run_python_tests_in_process
from groupwise.rewards.judges.rust import DEFAULT_COMPILE_TIMEOUT_S, RustRunner, has_clippy
from groupwise.rewards.judges.verdict import Verdict
from groupwise.rewards.registry import register_reward
from groupwise.rewards.values import RewardValues, verdict_values
from groupwise.sandbox import SandboxLimits, ensure_isolation, sandbox_limits

log = logging.getLogger(__name__)
LANGUAGES = ("python", "rust")
HARNESSES = ("separate", "in_process")  # Python: tests in their own process (default), or with the code


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


def _guarded(fn: Callable[..., Any], *args: Any) -> tuple[Any, bool]:
    """``fn(*args)``, or (None, True) when it raises anything but a user mistake (logged)."""
    try:
        return fn(*args), False
    except GroupwiseError:
        raise
    except Exception as err:  # noqa: BLE001 - one sample's failure must not reach the batch
        log.warning("code reward: evaluating one sample failed (%s: %s); it scores 0", type(err).__name__,
                    str(err)[:300])
        return None, True


def _test_one(run: Callable[[str, list[str]], Verdict], completion: Any, tests: list[str],
              language: str, prompt_code: tuple[str, str] | None = None) -> Verdict:
    """One sample against its tests; `prompt_code`: (the row's prompt, the entry point) of a HumanEval-style row
    whose completion may hold only the function's body."""
    text = completion_text(completion)
    code = extract_code(text, language, names_used_by_tests(tests, language))
    if prompt_code is not None:
        code = with_prompt_code(code, text, *prompt_code)
    verdict = Verdict(0, len(tests)) if code is None else run(code, tests)
    if not isinstance(verdict, Verdict):
        raise TypeError(f"a code-test runner returned {type(verdict).__name__}, not a Verdict")
    return verdict


def _verdicts(run: Callable[[str, list[str]], Verdict], completions: Sequence[Any],
              tests: list[list[str] | None], language: str, workers: int,
              prompt_code: Sequence[tuple[str, str] | None]) -> RewardValues:
    """Every sample with tests evaluated on the shared pool, each under its own guard."""
    jobs = [(c, ts, pc) for c, ts, pc in zip(completions, tests, prompt_code, strict=True) if ts]
    outcomes = iter(_map(lambda c, ts, pc: _guarded(_test_one, run, c, ts, language, pc), jobs, workers))
    verdicts: list[Verdict | None] = []
    failed: list[bool] = []
    for ts in tests:
        verdict, error = next(outcomes) if ts else (None, False)
        verdicts.append(Verdict(0, len(ts)) if ts and verdict is None else verdict)
        failed.append(error)
    return verdict_values(verdicts, failed)


def _per_sample(fn: Callable[[str], Any], codes: list[str | None], workers: int) -> tuple[list[Any], list[bool]]:
    """``fn(code)`` for each extracted code (None where there is none or it failed), and which ones failed."""
    outcomes = iter(_map(lambda code: _guarded(fn, code), [(c,) for c in codes if c is not None], workers))
    results, failed = [], []
    for code in codes:
        value, error = next(outcomes) if code is not None else (None, False)
        results.append(value)
        failed.append(error)
    return results, failed


def _extract_all(completions: Sequence[Any], language: str) -> list[str | None]:
    return [_guarded(lambda c: extract_code(completion_text(c), language), c)[0] for c in completions]


def _prompt_code(prompts: Sequence[Any], entry_point: Sequence[Any] | None, n: int) -> list[tuple[str, str] | None]:
    """(prompt, entry point) of each HumanEval-style sample (a string prompt and an `entry_point`), else None."""
    if not entry_point or len(prompts) != n:
        return [None] * n
    return [(p, e) if isinstance(p, str) and isinstance(e, str) and e else None
            for p, e in zip(prompts, entry_point, strict=True)]


@register_reward("code_tests")
def make_code_tests(language: str = "python", sandbox: dict[str, Any] | None = None, workers: int = 4,
                    target_dir: str | None = None, compile_timeout_s: float = DEFAULT_COMPILE_TIMEOUT_S,
                    harness: str = "separate", prepend_prompt: bool = True) -> Callable[..., list]:
    """Fraction of the row's ``tests`` that the completion's code passes, run sandboxed.

    The code is the fenced block (or whole completion) that defines the names the tests use (rule:
    ``groupwise.rewards.extract``). Python (``harness: separate``, the default): the tests run in a harness
    process that calls the solution's functions in another sandbox, so the code cannot decide a verdict;
    ``harness: in_process`` runs each test inside the solution's process, for tests that need real objects
    (weaker: see docs/sandbox.md). Diagnostics: ``tests_not_run``, ``limit_hit``, ``sample_errors``.
    HumanEval-style rows (an ``entry_point`` column): a completion that does not define that function, under a
    prompt that does, is judged as the prompt's code followed by the completion (``prepend_prompt: false``
    judges the completion alone).
    """
    if language not in LANGUAGES:
        raise GroupwiseError(f"code_tests language '{language}' is not supported", "use python or rust")
    if harness not in HARNESSES:
        raise GroupwiseError(f"code_tests harness '{harness}' is not supported", "use separate or in_process")
    limits, workers = _limits(sandbox), _check_workers(workers)
    if language == "rust":
        run = RustRunner(limits, target_dir, compile_timeout_s).test
    else:
        python_interpreter()  # root without bwrap and no interpreter an unprivileged uid can run: fail now
        python = run_python_tests if harness == "separate" else run_python_tests_in_process
        run = lambda code, tests: python(code, tests, limits)  # noqa: E731

    def code_tests(prompts: Sequence[Any], completions: Sequence[Any], completion_ids: Any = None,
                   tests: Sequence[Any] | None = None, entry_point: Sequence[Any] | None = None,
                   **_: Any) -> list[float | None]:
        if tests is None:
            raise GroupwiseError("code_tests needs a 'tests' column in the data",
                                 "give every row a list of test strings under 'tests'")
        prompt_code = _prompt_code(prompts, entry_point, len(tests)) if prepend_prompt and language == "python" \
            else [None] * len(tests)
        return _verdicts(run, completions, [_as_tests(t) for t in tests], language, workers, prompt_code)

    code_tests.required_columns = ("tests",)  # type: ignore[attr-defined]
    code_tests.row_prompts = True  # type: ignore[attr-defined]  # the rows' own prompts: HumanEval's code
    return code_tests


@register_reward("rust_compiles")
def make_rust_compiles(sandbox: dict[str, Any] | None = None, workers: int = 4, target_dir: str | None = None,
                       compile_timeout_s: float = DEFAULT_COMPILE_TIMEOUT_S) -> Callable[..., list]:
    """1.0 when the completion's Rust code passes ``cargo check``, else 0.0."""
    runner = RustRunner(_limits(sandbox), target_dir, compile_timeout_s)
    workers = _check_workers(workers)

    def rust_compiles(prompts: Sequence[Any], completions: Sequence[Any], completion_ids: Any = None,
                      **_: Any) -> list[float]:
        ok, failed = _per_sample(runner.compiles, _extract_all(completions, "rust"), workers)
        return RewardValues([float(bool(v)) for v in ok], {"sample_errors": [float(f) for f in failed]})

    return rust_compiles


@register_reward("rust_clippy")
def make_rust_clippy(sandbox: dict[str, Any] | None = None, workers: int = 4, target_dir: str | None = None,
                     compile_timeout_s: float = DEFAULT_COMPILE_TIMEOUT_S) -> Callable[..., list]:
    """1 / (1 + clippy warnings) when the Rust code compiles, else 0.0."""
    runner = RustRunner(_limits(sandbox), target_dir, compile_timeout_s)
    workers = _check_workers(workers)
    if not has_clippy():
        raise GroupwiseError("cargo clippy is not installed, so rust_clippy cannot run",
                             "install it: rustup component add clippy")

    def rust_clippy(prompts: Sequence[Any], completions: Sequence[Any], completion_ids: Any = None,
                    **_: Any) -> list[float]:
        counts, failed = _per_sample(runner.clippy_warnings, _extract_all(completions, "rust"), workers)
        return RewardValues([0.0 if w is None else 1.0 / (1.0 + w) for w in counts],
                            {"sample_errors": [float(f) for f in failed]})

    return rust_clippy
