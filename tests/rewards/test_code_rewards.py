"""Code rewards: extraction, Python and Rust tests (right fractions), Rust build and clippy rewards."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

from groupwise.config.schema import SandboxConfig
from groupwise.errors import GroupwiseError
from groupwise.rewards import available_rewards, resolve_reward
from groupwise.rewards import code as code_module
from groupwise.rewards.extract import completion_text, extract_code, names_used_by_tests
from groupwise.rewards.judges.rust import has_clippy
from groupwise.rewards.judges.verdict import Verdict

needs_cargo = pytest.mark.skipif(shutil.which("cargo") is None, reason="cargo is not installed")
ADD_TESTS_PY = ["assert add(1, 2) == 3", "assert add(0, 5) == 5", "assert add(-2, 2) == 0"]
ADD_TESTS_RS = ["assert_eq!(add(1, 2), 3);", "assert_eq!(add(0, 5), 5);", "assert_eq!(add(-2, 2), 0);"]


def fenced(code: str, tag: str) -> str:
    return f"Here you go:\n```{tag}\n{code}\n```\nDone."


@pytest.fixture(scope="module")
def target_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where this module's Rust samples get their private build dirs."""
    return tmp_path_factory.mktemp("rust-target")


def test_extracts_the_last_block_of_the_language() -> None:
    text = "```python\nfirst()\n```\n```rust\nfn x() {}\n```\n```py\nsecond()\n```\n```\nbare()\n```"
    assert extract_code(text, "python") == "second()\n"
    assert extract_code(text, "rust") == "fn x() {}\n"
    assert extract_code("```rs\nfn a() {}\n```", "rust") == "fn a() {}\n"


def test_falls_back_to_a_bare_block_and_ignores_other_languages() -> None:
    assert extract_code("text\n```\nx = 1\n```", "python") == "x = 1\n"
    assert extract_code("```rust\nfn a() {}\n```", "python") is None
    assert extract_code("no code at all", "python") is None
    assert extract_code("```python\nunterminated", "python") is None
    assert extract_code("```python\n\n```", "python") is None


def test_the_block_defining_the_tests_names_wins_over_example_usage() -> None:
    text = ("```python\ndef add(a, b):\n    return a + b\n```\nExample:\n```python\nprint(add(1, 2))\n```")
    assert extract_code(text, "python", {"add"}) == "def add(a, b):\n    return a + b\n"
    assert extract_code(text, "python") == "print(add(1, 2))\n"  # without names: the last block, as before
    rust = "```rust\npub fn add(a: i64, b: i64) -> i64 { a + b }\n```\n```rust\nfn main() { add(1, 2); }\n```"
    assert extract_code(rust, "rust", {"add"}) == "pub fn add(a: i64, b: i64) -> i64 { a + b }\n"


def test_unfenced_code_and_the_last_of_several_solutions() -> None:
    bare = "def add(a, b):\n    return a + b\n"
    assert extract_code(bare, "python", {"add"}) == bare
    assert extract_code("The answer is add them.", "python", {"add"}) is None
    two = ("Naive:\n```python\ndef add(a, b):\n    return sum([a, b])\n```\nBetter:\n"
           "```\ndef add(a, b):\n    return a + b\n```\n```python\nimport math\n```")
    assert extract_code(two, "python", {"add"}) == "def add(a, b):\n    return sum([a, b])\n"  # tagged first
    helper = ("```python\ndef helper(x):\n    return x\n```\n```python\ndef add(a, b):\n    return a + b\n"
              "def sub(a, b):\n    return a - b\n```\n```python\nassert add(1, 1) == 2\n```")
    assert extract_code(helper, "python", {"add", "sub"}).startswith("def add")
    assert names_used_by_tests(["x = f(2)\nassert math.isclose(x, g(1))", "assert len(h()) == 1"],
                               "python") == {"f", "g", "h", "math"}
    assert names_used_by_tests(["assert_eq!(add(1, 2), Some(3));"], "rust") == {"add"}


def test_code_tests_score_the_solution_not_its_usage_example_and_unfenced_code() -> None:
    reward = resolve_reward("code_tests", {})
    solution = "def add(a, b):\n    return a + b\n"
    with_usage = f"{fenced(solution, 'python')}\nUsage:\n```python\nprint(add(2, 3))\n```"  # scored 0 before
    assert reward(["", ""], [with_usage, solution], tests=[ADD_TESTS_PY] * 2) == [1.0, 1.0]


def test_extraction_is_linear_time_on_hostile_fences() -> None:
    for text in ["`" * 40_000, "```\n" * 10_000, "```python\n" * 4_000, "````\n```\n" * 5_000]:
        start = time.monotonic()
        extract_code(text, "python", {"f"})
        assert time.monotonic() - start < 1.0  # the regex took 7.8 s on the first one


def test_one_bad_sample_scores_zero_and_the_batch_goes_on(monkeypatch: pytest.MonkeyPatch) -> None:
    reward = resolve_reward("code_tests", {})
    good = fenced("def add(a, b):\n    return a + b", "python")
    in_comment = fenced("def add(a, b):\n    return a + b  # \ud800", "python")  # used to fail the batch
    in_code = fenced("def add(a, b):\n    return '\ud800'", "python")
    scores = reward(["", "", ""], [in_comment, in_code, good], tests=[ADD_TESTS_PY] * 3)
    assert scores == [1.0, 0.0, 1.0]

    def explode(code: str, tests: list[str], limits: object) -> object:
        if "boom" in code:
            raise RecursionError("cleanup of a deep tree")
        return Verdict(len(tests), len(tests))

    monkeypatch.setattr(code_module, "run_python_tests", explode)
    reward = resolve_reward("code_tests", {})
    scores = reward(["", "", ""], [fenced("boom = 1", "python"), good, good], tests=[ADD_TESTS_PY, ADD_TESTS_PY, None])
    assert scores == [0.0, 1.0, None]
    assert scores.diagnostics["sample_errors"] == [1.0, 0.0, None]


def test_rust_scores_consume_the_runners_verdicts(monkeypatch: pytest.MonkeyPatch) -> None:
    verdicts = {"ok": Verdict(3, 3), "exits": Verdict(1, 3, tests_not_run=True),
                "slow": Verdict(2, 3, limit_hit=True)}

    class FakeRunner:
        def __init__(self, *args: object) -> None:
            pass

        def test(self, code: str, tests: list[str]) -> Verdict:
            return verdicts[code.split()[-1]]

    monkeypatch.setattr(code_module, "RustRunner", FakeRunner)
    reward = resolve_reward("code_tests", {"language": "rust"})
    completions = [fenced(f"pub fn add() {{}} // {k}", "rust") for k in verdicts] + ["no code"]
    scores = reward([""] * 4, completions, tests=[ADD_TESTS_RS] * 4)
    assert scores == [1.0, pytest.approx(1 / 3), pytest.approx(2 / 3), 0.0]
    assert scores.diagnostics["tests_not_run"] == [0.0, 1.0, 0.0, 0.0]
    assert scores.diagnostics["limit_hit"] == [0.0, 0.0, 1.0, 0.0]


def test_completion_text_accepts_conversational_completions() -> None:
    assert completion_text([{"role": "assistant", "content": "hi"}]) == "hi"
    assert completion_text("plain") == "plain"


def test_rewards_are_registered() -> None:
    assert {"code_tests", "rust_compiles", "rust_clippy"} <= set(available_rewards())


def test_python_correct_partial_and_broken_code() -> None:
    reward = resolve_reward("code_tests", {"sandbox": SandboxConfig(timeout_s=5).model_dump()})
    completions = [
        fenced("def add(a, b):\n    return a + b", "python"),
        fenced("def add(a, b):\n    return a + b if a >= 0 else 99", "python"),
        fenced("def add(a, b)\n    return a + b", "python"),
        "I don't know.",
        fenced("def add(a, b):\n    return a + b", "rust"),
    ]
    scores = reward([""] * 5, completions, tests=[ADD_TESTS_PY] * 5)
    assert scores == [1.0, pytest.approx(2 / 3), 0.0, 0.0, 0.0]


def test_python_rows_without_tests_are_not_scored() -> None:
    reward = resolve_reward("code_tests", {})
    good = fenced("def add(a, b):\n    return a + b", "py")
    rows = [None, [], '["assert add(1, 1) == 2"]']
    assert reward(["", "", ""], [good] * 3, tests=rows) == [None, None, 1.0]


def test_python_tests_time_out_one_by_one() -> None:  # a fresh solution process serves the tests after a hang
    reward = resolve_reward("code_tests", {"sandbox": {"timeout_s": 2}, "workers": 4})
    code = fenced("def f(x):\n    while x < 0:\n        pass\n    return x", "python")
    tests = ["assert f(1) == 1", "assert f(-1) == -1", "assert f(2) == 2"]
    assert reward([""], [code], tests=[tests]) == [pytest.approx(2 / 3)]


def test_missing_tests_column_and_bad_params_are_clear_errors() -> None:
    reward = resolve_reward("code_tests", {})
    with pytest.raises(GroupwiseError, match="'tests' column"):
        reward([""], ["```python\npass\n```"])
    with pytest.raises(GroupwiseError, match="language 'go'"):
        resolve_reward("code_tests", {"language": "go"})
    with pytest.raises(GroupwiseError, match="workers"):
        resolve_reward("code_tests", {"workers": 0})


@needs_cargo
@pytest.mark.slow
def test_rust_correct_partial_and_compile_error(target_dir: Path) -> None:
    reward = resolve_reward("code_tests", {"language": "rust", "target_dir": str(target_dir), "workers": 2})
    completions = [
        fenced("pub fn add(a: i64, b: i64) -> i64 {\n    a + b\n}", "rust"),
        fenced("pub fn add(a: i64, b: i64) -> i64 {\n    if a < 0 { 99 } else { a + b }\n}", "rs"),
        fenced("pub fn add(a: i64, b: i64) -> i64 {\n    a + \n}", "rust"),
        "no code",
    ]
    scores = reward([""] * 4, completions, tests=[ADD_TESTS_RS] * 4)
    assert scores == [1.0, pytest.approx(2 / 3), 0.0, 0.0]


@needs_cargo
@pytest.mark.slow
def test_rust_hanging_test_only_loses_that_test(target_dir: Path) -> None:
    reward = resolve_reward("code_tests", {"language": "rust", "target_dir": str(target_dir),
                                           "sandbox": {"timeout_s": 3}})
    code = fenced("pub fn f(x: i64) -> i64 {\n    while x < 0 {}\n    x\n}", "rust")
    tests = ["assert_eq!(f(1), 1);", "assert_eq!(f(-1), -1);", "assert_eq!(f(2), 2);"]
    assert reward([""], [code], tests=[tests]) == [pytest.approx(2 / 3)]


@needs_cargo
@pytest.mark.slow
def test_rust_compiles(target_dir: Path) -> None:
    reward = resolve_reward("rust_compiles", {"target_dir": str(target_dir)})
    good = fenced("pub fn two() -> u8 {\n    2\n}", "rust")
    bad = fenced("pub fn two() -> u8 {\n    \"two\"\n}", "rust")
    assert reward(["", "", ""], [good, bad, "nothing"]) == [1.0, 0.0, 0.0]


@needs_cargo
@pytest.mark.slow
@pytest.mark.skipif(shutil.which("cargo") is None or not has_clippy(), reason="clippy is not installed")
def test_rust_clippy_prefers_fewer_warnings(target_dir: Path) -> None:
    reward = resolve_reward("rust_clippy", {"target_dir": str(target_dir)})
    clean = fenced("pub fn size(xs: &[i32]) -> usize {\n    xs.len()\n}", "rust")
    noisy = fenced("pub fn size(xs: &Vec<i32>) -> usize {\n    return xs.len();\n}", "rust")
    broken = fenced("pub fn size(xs: &[i32]) -> usize {\n    xs.len\n}", "rust")
    assert reward(["", "", ""], [clean, noisy, broken]) == [1.0, pytest.approx(1 / 3), 0.0]


@needs_cargo
def test_rust_clippy_missing_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(code_module, "has_clippy", lambda: False)
    with pytest.raises(GroupwiseError, match="rustup component add clippy"):
        resolve_reward("rust_clippy", {})
