"""Rust test plans: assertion sites, literal expected values, Debug comparison and the judging of records."""

from __future__ import annotations

import pytest

from groupwise.config.load import build_config
from groupwise.data.tasks.code_functions import load_problems
from groupwise.errors import GroupwiseError
from groupwise.rewards.judges.rust import count_lints
from groupwise.rewards.judges.rust_lex import debug_tokens, lex, same_debug
from groupwise.rewards.judges.rust_tests import (
    Witness,
    expected_candidates,
    harness_source,
    judge,
    literal_value,
    plan_tests,
    unjudged,
    witnesses,
)


def _record(tag: str, k: int, text: str = "") -> str:
    return f"\n\x1egw:{tag}:{k}:{text.encode().hex()}\n"


def test_lexer_skips_strings_comments_and_lifetimes() -> None:
    toks = lex('f("a, b)", \'x\', r#"q"#) /* c /* d */ */ // e\n<\'a>')
    assert [t.text for t in toks] == ["f", "(", '"a, b)"', ",", "'x'", ",", 'r#"q"#', ")", "<", "'a", ">"]


def test_sites_split_equalities_comparisons_and_negations() -> None:
    plan = plan_tests(['assert_eq!(f("assert!(x)"), 3, "msg {}", 1);', "assert!(!g(1));",
                       "assert!((h(1.0) - 2.0).abs() < 1e-9);", "std::assert_ne!(f(2), 4);",
                       "assert!(a(1) && b(2));", "assert_eq!(7, f(0));"])
    got = [(s.test, s.kind, s.actual, s.expected) for s in plan.sites]
    assert got == [(0, "eq", 'f("assert!(x)")', "3"), (1, "false", "g(1)", None),
                   (2, "lt", "(h(1.0) - 2.0).abs()", "1e-9"), (3, "ne", "f(2)", "4"),
                   (4, "true", "a(1)", None), (4, "true", "b(2)", None), (5, "eq", "7", "f(0)")]
    assert plan.sites[3].call == "::core::assert_ne!(f(2), 4)"


def test_a_conjunction_is_one_site_per_part_and_a_disjunction_cannot_be_judged() -> None:
    plan = plan_tests(["assert!(add(1, 2) == 3 && (add(2, 2) == 4 && !is_odd(2)), \"msg\");",
                       "assert!(f(1) == 3 || f(1) == 4);", "assert!(!(f(1) == 3));"])
    got = [(s.test, s.kind, s.actual, s.expected, s.call, s.why) for s in plan.sites]
    assert got == [(0, "eq", "add(1, 2)", "3", "::core::assert!(add(1, 2) == 3)", ""),
                   (0, "eq", "add(2, 2)", "4", "::core::assert!(add(2, 2) == 4)", ""),
                   (0, "false", "is_odd(2)", None, "::core::assert!(!is_odd(2))", ""),
                   (1, "true", "f(1) == 3 || f(1) == 4", None, "::core::assert!(f(1) == 3 || f(1) == 4)",
                    "`assert!(f(1) == 3 || f(1) == 4)` is one bool made with `||`"),
                   (2, "false", "(f(1) == 3)", None, "::core::assert!(!(f(1) == 3))",
                    "`assert!(f(1) == 3)` is one bool made with `==`")]
    judged = witnesses(plan, {})
    assert set(judged) == {0, 1, 2}
    assert unjudged(plan, {}) == {1: plan.sites[3].why, 2: plan.sites[4].why}
    source = harness_source(plan, judged)
    assert "::gwharness::witness(1, &__gw_v)" in source and "::core::assert!(f(1) == 3 || f(1) == 4)" in source


def test_leading_lets_go_with_an_expected_side_into_the_program_without_the_solution() -> None:
    plan = plan_tests([
        "let expected = 3; assert_eq!(add(1, 2), expected);",
        "let x = add(1, 2);\nlet e = 3;\nlet f = e + 1;\nassert_eq!(x + 1, f);",
        "let e = 3; assert_eq!(e, add(1, 2));",  # swapped: the solution's side is on the right
        "let mut v = vec![1]; v.push(2); assert_eq!(g(), v);",  # mutable: its value at the assert is unknown
        "let c = Cell::new(3); c.set(4); assert_eq!(g(), c.get());",  # interior mutability, likewise
        "let e = 3; for i in 0..2 { assert_eq!(h(i), e); }",  # nested in a loop: not repeated
        "let e = 3; assert_eq!(h(1), e); let e = 4; assert_eq!(h(2), e);"])  # rebound before the second
    assert expected_candidates(plan) == {
        (0, 0): "{ let expected = 3;\nexpected\n}", (0, 1): "add(1, 2)",
        (1, 0): "{ let e = 3; let f = e + 1;\nf\n}", (1, 1): "{ let x = add(1, 2);\nx + 1\n}",
        (2, 0): "add(1, 2)", (2, 1): "{ let e = 3;\ne\n}", (3, 0): "v", (3, 1): "g()", (4, 0): "c.get()",
        (4, 1): "g()", (5, 0): "e", (5, 1): "h(i)", (6, 0): "{ let e = 3;\ne\n}", (6, 1): "h(1)", (7, 0): "e",
        (7, 1): "h(2)"}


def test_literals_are_read_without_compiling() -> None:
    assert literal_value("12586269025") == [("num", 12586269025)]  # beyond i32: no inference needed here
    assert literal_value("Some((1, \"a\\tb\".to_string(), vec![-2.5], 'c'))") == [
        ("word", "Some"), ("punct", "("), ("punct", "("), ("num", 1), ("punct", ","), ("str", "a\tb"),
        ("punct", ","), ("punct", "["), ("num", -2.5), ("punct", "]"), ("punct", ","), ("char", "c"),
        ("punct", ")"), ("punct", ")")]
    assert literal_value("Vec::<Vec<i32>>::new()") == [("punct", "["), ("punct", "]")]
    assert literal_value("(7,)") == [("punct", "("), ("num", 7), ("punct", ","), ("punct", ")")]
    assert literal_value("None") == [("word", "None")]
    assert literal_value("f(3)") is None and literal_value("3 + 4") is None


def test_debug_outputs_compare_numbers_by_value_and_strings_decoded() -> None:
    assert same_debug("Some(3.0)", debug_tokens("Some(3)") or [])
    assert same_debug('"a\\u{301}"', [("str", "a\u0301")])
    assert not same_debug('"3"', [("num", 3)])
    assert not same_debug("[1, 2]", debug_tokens("[1, 2, 3]") or [])


def test_only_values_cross_into_the_harness_and_expected_values_stay_out() -> None:
    plan = plan_tests(["assert_eq!(add(20, 22), 424242);", "assert!(!is_odd(2));", "assert_eq!(s(), Some(x()));"])
    judged = witnesses(plan, {})
    source = harness_source(plan, judged)
    assert "424242" not in source and "add(20, 22)" in source  # the expected side is not in the test crate
    assert "::core::assert_eq!(s(), Some(x()))" in source  # no value to witness: checked in process
    assert "assert_eq!(" not in source.replace("::core::assert_eq!(", "")
    assert expected_candidates(plan) == {(2, 0): "Some(x())", (2, 1): "s()"}


def test_judging_needs_the_right_value_and_an_end_per_test() -> None:
    plan = plan_tests(["assert_eq!(add(1, 2), 3);", "assert!(!is_odd(2));", "assert!(f(0.5) > 0.25);",
                       "assert_eq!(add(2, 2), 4);"])
    judged = witnesses(plan, {})
    out = (_record("w", 0, "3") + _record("end", 0) + _record("w", 1, "false") + _record("end", 1)
           + "noise without a newline" + _record("w", 2, "0.3") + _record("end", 2))
    verdict = judge(plan, judged, out, limit_hit=False)
    assert (verdict.passed, verdict.total, verdict.tests_not_run) == (3, 4, True)  # test 3 never reported
    forged = "".join(_record("end", i) for i in range(4)) + "test tests::t0 ... ok\n"
    assert judge(plan, judged, forged, False).passed == 0  # ends without values do not pass
    wrong_then_right = _record("w", 0, "4") + _record("w", 0, "3") + _record("end", 0)
    assert judge(plan, judged, wrong_then_right, False).passed == 0


def test_a_literal_left_of_an_ordering_is_judged_with_the_relation_flipped() -> None:
    plan = plan_tests(["assert!(0 < f(1));", "assert!(10 >= f(2));"])
    judged = witnesses(plan, {})
    assert judged == {0: Witness("gt", [("num", 0)], swapped=True), 1: Witness("le", [("num", 10)], swapped=True)}
    assert "::gwharness::witness(0, &__gw_v)" in harness_source(plan, judged)
    right = _record("w", 0, "5") + _record("end", 0) + _record("w", 1, "10") + _record("end", 1)
    wrong = _record("w", 0, "-5") + _record("end", 0) + _record("w", 1, "11") + _record("end", 1)
    assert judge(plan, judged, right, False).passed == 2
    assert judge(plan, judged, wrong, False).passed == 0


def test_a_test_that_cannot_be_judged_by_value_fails_whatever_is_printed() -> None:
    plan = plan_tests(["assert_eq!(f(2), f(1) + 1);", "assert_eq!(f(1), 1);", "assert!(f(1) == 1 || f(1) == 2);"])
    judged = witnesses(plan, {})
    ended = "".join(_record("end", i) for i in range(3)) + _record("w", 1, "1")  # what anyone could print
    verdict = judge(plan, judged, ended, False)
    assert (verdict.passed, verdict.total, verdict.tests_unjudgeable) == (1, 3, 2)  # only the middle test passes


def test_clippy_counts_lints_and_rejects_lowered_lints() -> None:
    lint = '{"message":"unneeded `return`","code":{"code":"clippy::needless_return"},"level":"error","spans":[{}]}'
    overruled = ('{"message":"allow(clippy::all) incompatible with previous forbid","code":{"code":"E0453"},'
                 '"level":"error","spans":[{}]}')
    type_error = '{"message":"mismatched types","code":{"code":"E0308"},"level":"error","spans":[{}]}'
    summary = '{"message":"aborting due to 2 previous errors","code":null,"level":"error","spans":[]}'
    assert count_lints("\n".join([lint, lint, summary])) == 2
    assert count_lints("\n".join([overruled, lint])) is None
    assert count_lints(type_error) is None
    assert count_lints("") == 0


def test_every_builtin_rust_assertion_is_judged_by_value() -> None:
    for problem in load_problems("rust"):
        plan = plan_tests(problem["tests"])
        assert len(plan.sites) == len(problem["tests"])
        assert set(witnesses(plan, {})) == set(range(len(plan.sites))), problem["entry_point"]


def test_compile_timeout_must_be_well_under_the_reward_timeout() -> None:
    rust = "rewards.functions=[{name: code_tests, params: {language: rust, compile_timeout_s: 30}}]"
    with pytest.raises(GroupwiseError, match=r"compile_timeout_s \(30s\) must be at most half"):
        build_config(None, ["data.task=rust-functions", rust, "rewards.timeout_s=50"])
    with pytest.raises(GroupwiseError, match=r"compile_timeout_s \(20s\)"):  # the task's own reward, default
        build_config(None, ["data.task=rust-functions", "rewards.timeout_s=30"])
    assert build_config(None, ["data.task=rust-functions", rust, "rewards.timeout_s=60"]).rewards.timeout_s == 60
