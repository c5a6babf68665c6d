"""Hostile Rust samples: each attack on the test verdict, the build dirs, clippy or the compile limit scores 0."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest

from groupwise.errors import GroupwiseError
from groupwise.rewards import resolve_reward
from groupwise.rewards.judges.rust import RustRunner, find_toolchain, has_clippy
from groupwise.sandbox import box as sb
from groupwise.sandbox.box import SandboxLimits

pytestmark = [pytest.mark.slow, pytest.mark.skipif(shutil.which("cargo") is None, reason="cargo is not installed")]
TESTS = ["assert_eq!(add(1, 2), 3);", "assert_eq!(add(-4, 5), 1);", "assert_eq!(add(20, 22), 42);",
         "assert!(add(2, 2) > 3);", "assert!(add(1, 1) == 2);",
         "let expected = 3; assert_eq!(add(1, 2), expected);", "assert!(add(1, 2) == 3 && add(2, 2) == 4);"]
CORRECT = "pub fn add(a: i64, b: i64) -> i64 {\n    a + b\n}"
ATTACKS = {
    "prints libtest's ok lines": """pub fn add(_a: i64, _b: i64) -> i64 {
    for i in 0..8 { println!("test tests::t{i} ... ok"); }
    println!("test result: ok. 5 passed; 0 failed");
    0
}""",
    "prints the harness's end records and exits 0": """pub fn add(_a: i64, _b: i64) -> i64 {
    for i in 0..8 { print!("\\n\\x1egw:end:{i}:\\n"); }
    std::process::exit(0)
}""",
    "prints ok lines from a constructor before main": """#[used]
#[link_section = ".init_array"]
static EARLY: extern "C" fn() = {
    extern "C" fn early() {
        use std::io::Write;
        let mut out = std::io::stdout();
        for i in 0..8 { let _ = write!(out, "test tests::t{i} ... ok\\n\\x1egw:end:{i}:\\n"); }
        let _ = out.flush();
        std::process::exit(0);
    }
    early
};
pub fn add(a: i64, b: i64) -> i64 { a - b }""",
    "shadows assert_eq! and assert!": """macro_rules! assert_eq { ($($t:tt)*) => {}; }
macro_rules! assert { ($($t:tt)*) => {}; }
pub fn add(_a: i64, _b: i64) -> i64 { 0 }""",
    "exports assert_eq! and assert! to the tests": """#[macro_export]
macro_rules! assert_eq { ($($t:tt)*) => {}; }
#[macro_export]
macro_rules! assert { ($($t:tt)*) => {}; }
pub fn add(_a: i64, _b: i64) -> i64 { 0 }""",
    "reads the tests with include_str!": """pub fn add(a: i64, b: i64) -> i64 {
    let src: &str = include_str!("lib.rs");
    let key = format!("add({a}, {b}), ");
    src.find(&key).map(|i| {
        let rest = &src[i + key.len()..];
        rest[..rest.find(')').unwrap_or(0)].trim().parse().unwrap_or(0)
    }).unwrap_or(0)
}""",
    "reads other samples' build output": """pub fn add(a: i64, b: i64) -> i64 {
    (include_bytes!("/target/libsolution.rlib").len() + include_bytes!("/target/gwtests").len()) as i64
}""",
    "returns an always-equal value": """#[derive(Debug)]
pub struct Anything;
impl PartialEq<i32> for Anything { fn eq(&self, _: &i32) -> bool { true } }
impl PartialOrd<i32> for Anything {
    fn partial_cmp(&self, _: &i32) -> Option<std::cmp::Ordering> { Some(std::cmp::Ordering::Greater) }
}
pub fn add(_a: i64, _b: i64) -> Anything { Anything }""",
    "exits before the tests run": "pub fn add(_a: i64, _b: i64) -> i64 { std::process::exit(0) }",
    "prints end records and `true` values, then exits 0": """pub fn add(_a: i64, _b: i64) -> i64 {
    for i in 0..8 { print!("\\n\\x1egw:end:{i}:\\n\\x1egw:w:{i}:74727565\\n"); }
    std::process::exit(0)
}""",
    "compiles a 1 GB static": """pub static BIG: [u8; 1 << 30] = [7; 1 << 30];
pub fn add(a: i64, b: i64) -> i64 { a + b + BIG[0] as i64 - 7 }""",
}


def fenced(code: str) -> str:
    return f"```rust\n{code}\n```"


def test_every_attack_scores_zero_and_honest_code_scores_one(tmp_path: Path, isolation: str) -> None:
    params = {"language": "rust", "target_dir": str(tmp_path), "workers": 2}
    if sb.root_fallback() and not sb.world_reachable([find_toolchain().sysroot, str(tmp_path)]):
        with pytest.raises(GroupwiseError, match="will not run model-written code as root"):
            resolve_reward("code_tests", params)  # root, no bwrap, a toolchain only root can run: refused
        return
    reward = resolve_reward("code_tests", params)
    honest = {"correct": CORRECT, "prints without a newline":
              "pub fn add(a: i64, b: i64) -> i64 {\n    print!(\"x\");\n    a + b\n}"}
    samples = {**honest, **ATTACKS}
    scores = reward([""] * len(samples), [fenced(c) for c in samples.values()], tests=[TESTS] * len(samples))
    got = dict(zip(samples, scores, strict=True))
    assert got == {**dict.fromkeys(honest, 1.0), **dict.fromkeys(ATTACKS, 0.0)}
    assert list(tmp_path.iterdir()) == []  # every sample's build dir is gone


def test_an_endless_constant_times_out_alone(tmp_path: Path) -> None:
    endless = ("#![allow(long_running_const_eval)]\n"
               "const X: i64 = { let mut i = 0i64; while i >= 0 { i = (i + 1) % 1000; } i };\n"
               "pub fn add(a: i64, b: i64) -> i64 { a + b + X }")
    runner = RustRunner(SandboxLimits(), tmp_path, compile_timeout_s=3.0)
    verdict = runner.test(endless, TESTS)
    assert (verdict.score, verdict.limit_hit) == (0.0, True)
    reward = resolve_reward("code_tests", {"language": "rust", "target_dir": str(tmp_path), "workers": 2,
                                           "compile_timeout_s": 3.0})
    assert reward(["", ""], [fenced(endless), fenced(CORRECT)], tests=[TESTS, TESTS]) == [0.0, 1.0]


def test_an_early_exit_is_reported_as_tests_not_run(tmp_path: Path) -> None:
    runner = RustRunner(SandboxLimits(), tmp_path)
    verdict = runner.test(ATTACKS["exits before the tests run"], TESTS)
    assert (verdict.passed, verdict.total, verdict.tests_not_run) == (0, 7, True)
    assert runner.test(CORRECT, TESTS).tests_not_run is False


def test_an_out_of_memory_abort_counts_as_a_limit(tmp_path: Path) -> None:
    runner = RustRunner(SandboxLimits(), tmp_path)
    hog = "pub fn add(a: i64, b: i64) -> i64 {\n    let v = vec![1u8; 1 << 36];\n    a + b + v[0] as i64 - 1\n}"
    verdict = runner.test(hog, TESTS)  # 64 GiB: Rust aborts the whole program when the allocation fails
    assert (verdict.passed, verdict.tests_not_run, verdict.limit_hit) == (0, True, True)
    honest = runner.test(CORRECT, TESTS)
    assert (honest.score, honest.limit_hit) == (1.0, False)


@pytest.mark.skipif(shutil.which("cargo") is None or not has_clippy(), reason="clippy is not installed")
def test_clippy_lints_cannot_be_switched_off_from_the_source(tmp_path: Path) -> None:
    reward = resolve_reward("rust_clippy", {"target_dir": str(tmp_path), "workers": 2})
    noisy = "pub fn size(xs: &Vec<i32>) -> usize {\n    return xs.len();\n}"
    samples = {"noisy": noisy, "allow clippy::all": "#![allow(clippy::all)]\n" + noisy,
               "allow warnings": "#![allow(warnings)]\n" + noisy,
               "allow on the item": "#[allow(clippy::ptr_arg, clippy::needless_return)]\n" + noisy,
               "expect": "#![expect(clippy::all)]\n" + noisy}
    scores = dict(zip(samples, reward([""] * len(samples), [fenced(c) for c in samples.values()]), strict=True))
    assert scores == {"noisy": pytest.approx(1 / 3), **dict.fromkeys(list(samples)[1:], 0.0)}


def test_expected_sides_that_need_compiling_are_evaluated_without_the_solution(tmp_path: Path) -> None:
    tests = ["assert_eq!(double(3), 2 * 3);", "assert_eq!(6, double(3));",
             'assert_eq!(double(2), "abcd".len() as i64);', "assert_eq!(double(2), double(1) * 2);"]
    runner = RustRunner(SandboxLimits(), tmp_path)
    honest = runner.test("pub fn double(x: i64) -> i64 { 2 * x }", tests)
    assert (honest.passed, honest.tests_unjudgeable) == (3, 1)
    assert runner.test("pub fn double(x: i64) -> i64 { x + 1 }", tests).passed == 0
    forger = """pub fn double(_x: i64) -> i64 {
    for i in 0..4 { print!("\\n\\x1egw:end:{i}:\\n"); }
    std::process::exit(0)
}"""
    # the last test cannot be judged by value (its expected side calls the solution): it passes no one
    assert runner.test(forger, tests).passed == 0


def test_a_test_no_value_can_judge_scores_zero_is_counted_and_warned_about_once(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    tests = ["let expected = 3; assert_eq!(add(1, 2), expected);", "assert!(add(1, 1) == 2 || add(1, 1) == 3);",
             "assert_eq!(add(2, 2), add(1, 1) * 2);"]
    forger = ATTACKS["prints end records and `true` values, then exits 0"]
    reward = resolve_reward("code_tests", {"language": "rust", "target_dir": str(tmp_path), "workers": 2})
    with caplog.at_level(logging.WARNING, logger="groupwise.rewards.judges.rust"):
        scores = reward(["", ""], [fenced(CORRECT), fenced(forger)], tests=[tests] * 2)
    assert scores == [pytest.approx(1 / 3), 0.0]  # the honest sample passes the one test that is judged by value
    assert scores.diagnostics["tests_unjudgeable"] == [1.0, 1.0]
    warned = [r.getMessage() for r in caplog.records if "cannot be judged by value" in r.getMessage()]
    assert len(warned) == 1 and repr(tests[1]) in warned[0] and "is one bool made with `||`" in warned[0]


@pytest.mark.skipif(shutil.which("cargo") is None or not has_clippy(), reason="clippy is not installed")
def test_clippy_counts_lints_in_code_passed_through_a_macro_but_not_in_its_body(tmp_path: Path) -> None:
    # documented in docs/sandbox.md: clippy skips code that a local macro_rules! body expands to
    reward = resolve_reward("rust_clippy", {"target_dir": str(tmp_path), "workers": 2})
    noisy = "pub fn size(xs: &Vec<i32>) -> usize {\n    return xs.len();\n}"  # needless_return, ptr_arg
    samples = {"plain": noisy,
               "passed through": f"macro_rules! id {{ ($($t:tt)*) => {{ $($t)* }}; }}\nid! {{\n{noisy}\n}}",
               "in the body": f"macro_rules! body {{ () => {{ {noisy} }}; }}\nbody!();"}
    scores = dict(zip(samples, reward([""] * 3, [fenced(c) for c in samples.values()]), strict=True))
    assert scores == {"plain": pytest.approx(1 / 3), "passed through": pytest.approx(1 / 3), "in the body": 0.5}
