"""Rust test statements judged outside the code under test, by value witnesses.

Every assertion in a test (``assert_eq!``, ``assert_ne!``, ``assert!``) is a *site*. The side of a site that
needs the solution (the *actual* side, e.g. ``add(1, 2)``) is compiled into the test binary, next to the
solution, which prints its ``{:?}``; the other side (the *expected* side, e.g. ``3``) never enters that
binary: it is read here when it is a plain literal, else evaluated by a binary built without the solution.
The host compares the two. To forge a passing record the solution must print the right answer. A test with a
site that cannot be judged this way (``unjudged``) scores 0: its end record is one the solution could print.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise

from groupwise.rewards.judges.rust_lets import Let, leading_lets, lets_for_site, with_lets
from groupwise.rewards.judges.rust_lex import (
    Tok,
    Value,
    debug_tokens,
    lex,
    matching,
    ordered,
    same_debug,
    split_args,
    top_level,
)
from groupwise.rewards.judges.verdict import Verdict

_MACROS = {"assert": "assert", "debug_assert": "assert", "assert_eq": "assert_eq",
           "debug_assert_eq": "assert_eq", "assert_ne": "assert_ne", "debug_assert_ne": "assert_ne"}
_COMPARE = {"==": "eq", "!=": "ne", "<": "lt", "<=": "le", ">": "gt", ">=": "ge"}
_FLIP = {"eq": "eq", "ne": "ne", "lt": "gt", "le": "ge", "gt": "lt", "ge": "le"}
_NOT_SPLITTABLE = {"||", "|", "=", "..", "..=", "=>", "+=", "-=", "*=", "/=", "%=", "&=", "|=", "^="}
TRUE: list[Value] = [("word", "true")]
FALSE: list[Value] = [("word", "false")]


@dataclass(frozen=True)
class Site:
    """One assertion: its test, the relation, the solution side and the expected side (None: a bool)."""

    test: int
    kind: str  # eq, ne, lt, le, gt, ge (actual KIND expected), or true / false (a bool condition)
    actual: str
    expected: str | None
    start: int  # where the whole macro call sits in the test's text
    end: int
    call: str  # the macro call with its path qualified (``::core::assert_eq!(...)``): the in-process fallback
    lets: tuple[Let, ...] = ()  # the test's leading lets that its expected side may use (``rust_lets``)
    why: str = ""  # why no value can judge it, whatever is evaluated (a condition that is one opaque bool)


@dataclass(frozen=True)
class Plan:
    """The tests of one row, their assertion sites, and the test texts."""

    tests: tuple[str, ...]
    sites: tuple[Site, ...]


def _qualify(text: str, toks: list[Tok], offset: int = 0) -> str:
    """Rewrite every assert-macro path in ``text`` to ``::core::NAME!`` (cannot be shadowed by the solution)."""
    out, pos = [], 0
    for j, tok in enumerate(toks):
        if tok.kind == "ident" and tok.text in _MACROS and j + 1 < len(toks) and toks[j + 1].text == "!":
            first = j
            while first >= 2 and toks[first - 1].text == "::" and toks[first - 2].text in ("core", "std"):
                first -= 2
            if first >= 1 and toks[first - 1].text == "::":
                first -= 1
            out += [text[pos:toks[first].start - offset], f"::core::{_MACROS[tok.text]}"]
            pos = tok.end - offset
    return "".join([*out, text[pos:]])


def _src(text: str, toks: list[Tok]) -> str:
    return _qualify(text[toks[0].start:toks[-1].end], toks, toks[0].start) if toks else ""


def _unwrapped(toks: list[Tok]) -> list[Tok]:
    """``toks`` without parentheses around the whole of it (``(a == b)`` -> ``a == b``)."""
    while len(toks) > 2 and toks[0].text == "(" and matching(toks, 0) == len(toks) - 1:
        toks = toks[1:-1]
    return toks


def _conjuncts(toks: list[Tok]) -> list[list[Tok]]:
    """``a && (b && c)`` -> ``[a, b, c]``: each part of a top-level conjunction is a site of its own (all of them
    hold exactly when the whole does). A top-level ``||`` binds looser than ``&&``: that is one condition."""
    inner = _unwrapped(toks)
    level = top_level(inner)
    ands = [j for j in level if inner[j].text == "&&"]
    if not ands or any(inner[j].text == "||" for j in level):
        return [toks]
    bounds = [-1, *ands, len(inner)]
    return [part for a, b in pairwise(bounds) for part in _conjuncts(inner[a + 1:b])]


def _opaque(toks: list[Tok], text: str, comparisons: int = 1) -> str:
    """Why a condition is one bool the solution could print without computing it ("" when it is not): a
    top-level operator that cannot be split into sites, or more comparisons than one site can judge."""
    level = top_level(toks)
    ops = [toks[j].text for j in level if toks[j].kind == "punct" and toks[j].text in _COMPARE]
    joins = [toks[j].text for j in level if toks[j].text in _NOT_SPLITTABLE | {"&&"}]
    if joins or len(ops) > comparisons:
        return f"`assert!({_src(text, toks)})` is one bool made with `{(joins or ops)[0]}`"
    return ""


def _condition(toks: list[Tok], text: str) -> tuple[str, str, str | None, str]:
    """(kind, actual, expected, why) of one ``assert!`` condition (a conjunct)."""
    toks = _unwrapped(toks)
    level = top_level(toks)
    ops = [j for j in level if toks[j].kind == "punct" and toks[j].text in _COMPARE]
    why = _opaque(toks, text)
    if why:
        return "true", _src(text, toks), None, why
    if ops:
        j = ops[0]
        left, right = toks[:j], toks[j + 1:]
        if left and right:
            return _COMPARE[toks[j].text], _src(text, left), _src(text, right), ""
    if toks[0].text == "!" and len(toks) > 1 and all(
            toks[j].kind != "punct" or toks[j].text in (".", "::", "?") for j in level if j > 0):
        return "false", _src(text, toks[1:]), None, _opaque(_unwrapped(toks[1:]), text, comparisons=0)
    return "true", _src(text, toks), None, ""


def _sites(test: int, text: str) -> list[Site]:
    toks = lex(text)
    level = set(top_level(toks))
    lets, after = leading_lets(toks, text, level)
    found, j = [], 0
    while j < len(toks):
        tok = toks[j]
        if not (tok.kind == "ident" and tok.text in _MACROS and j + 2 < len(toks) and toks[j + 1].text == "!"
                and toks[j + 2].text in ("(", "[", "{")):
            j += 1
            continue
        first = j
        while first >= 2 and toks[first - 1].text == "::" and toks[first - 2].text in ("core", "std"):
            first -= 2
        if first >= 1 and toks[first - 1].text == "::":
            first -= 1
        close = matching(toks, j + 2)
        args = split_args(toks[j + 3:close])
        start, end = toks[first].start, toks[close].end
        call = _qualify(text[start:end], toks[first:close + 1], start)
        seen = lets_for_site(toks, level, lets, after, first)
        macro = _MACROS[tok.text]
        if macro == "assert" and args:
            parts = _conjuncts(args[0])
            for part in parts:
                kind, actual, expected, why = _condition(part, text)
                own = call if len(parts) == 1 else f"::core::assert!({_src(text, part)})"
                found.append(Site(test, kind, actual, expected, start, end, own, seen, why))
        elif len(args) >= 2:
            kind = "eq" if macro == "assert_eq" else "ne"
            found.append(Site(test, kind, _src(text, args[0]), _src(text, args[1]), start, end, call, seen))
        else:
            raise ValueError(f"cannot read {tok.text}!")
        j = close + 1
    return found


def plan_tests(tests: Sequence[str]) -> Plan:
    """Find the assertion sites of every test (none in a test this lexer cannot read: it runs as written)."""
    sites = []
    for i, test in enumerate(tests):
        try:
            sites += _sites(i, test)
        except ValueError:
            continue
    return Plan(tuple(tests), tuple(sites))


def _qualified(text: str) -> str:
    try:
        return _qualify(text, lex(text))
    except ValueError:
        return text


# --- expected values ----------------------------------------------------------------------------------------

_SUFFIX = re.compile(r"(?:[iu](?:8|16|32|64|128|size)|f32|f64)$")


def _number(text: str) -> int | float:
    is_float = text.endswith(("f32", "f64")) and not text.startswith("0x")
    raw = _SUFFIX.sub("", text).replace("_", "")
    if raw[:2] in ("0x", "0o", "0b"):
        return int(raw, {"0x": 16, "0o": 8, "0b": 2}[raw[:2]])
    return float(raw) if is_float or re.search(r"[.eE]", raw) else int(raw)


class _Literal:
    """Reads an expected side made of plain literals into Debug tokens (``Some(vec![1, 2])`` and the like)."""

    def __init__(self, toks: list[Tok]) -> None:
        self.toks, self.i = toks, 0

    def peek(self, k: int = 0) -> str:
        return self.toks[self.i + k].text if self.i + k < len(self.toks) else ""

    def take(self, *texts: str) -> None:
        for text in texts:
            if self.peek() != text:
                raise ValueError(text)
            self.i += 1

    def items(self, close: str) -> tuple[list[Value], int]:
        """Comma-separated expressions up to ``close``: their tokens (with commas) and how many."""
        out: list[Value] = []
        count = 0
        while self.peek() != close:
            if count:
                self.take(",")
                if self.peek() == close:
                    break
                out.append(("punct", ","))
            out += self.expr()
            count += 1
        self.take(close)
        return out, count

    def expr(self) -> list[Value]:
        tok = self.toks[self.i] if self.i < len(self.toks) else None
        if tok is None:
            raise ValueError("end")
        self.i += 1
        if tok.text == "-" and self.peek() and self.toks[self.i].kind == "num":
            value = _number(self.toks[self.i].text)
            self.i += 1
            return [("num", -value)]
        if tok.kind == "num":
            return [("num", _number(tok.text))]
        if tok.kind == "str" and not tok.text.startswith(("b", "r")):
            value = debug_tokens(tok.text)
            for method in ("to_string", "to_owned", "into"):
                if self.peek() == "." and self.peek(1) == method:
                    self.take(".", method, "(", ")")
            if value is None or len(value) != 1:
                raise ValueError("string")
            return value
        if tok.kind == "char" and not tok.text.startswith("b"):
            value = debug_tokens(tok.text)
            if value is None:
                raise ValueError("char")
            return value
        if tok.text in ("true", "false", "None"):
            return [("word", tok.text)]
        if tok.text in ("Some", "Ok", "Err"):
            self.take("(")
            inner = self.expr()
            self.take(")")
            return [("word", tok.text), ("punct", "("), *inner, ("punct", ")")]
        if tok.text == "vec" and self.peek() == "!":
            self.take("!", "[")
            return [("punct", "["), *self.items("]")[0], ("punct", "]")]
        if tok.text == "[":
            return [("punct", "["), *self.items("]")[0], ("punct", "]")]
        if tok.text in ("Vec", "String"):
            if self.peek() == "::" and self.peek(1) == "<":
                self.i = matching_angle(self.toks, self.i + 1) + 1
            if tok.text == "String" and self.peek(1) == "from":
                self.take("::", "from", "(")
                inner = self.expr()
                self.take(")")
                if inner[0][0] != "str":
                    raise ValueError("String::from")
                return inner
            self.take("::", "new", "(", ")")
            return [("str", "")] if tok.text == "String" else [("punct", "["), ("punct", "]")]
        if tok.text == "(":
            first = self.i
            inner, count = self.items(")")
            inside = self.toks[first:self.i - 1]
            if count == 1 and not any(inside[j].text == "," for j in top_level(inside)):
                return inner  # a parenthesised expression
            single = [("punct", ",")] if count == 1 else []
            return [("punct", "("), *inner, *single, ("punct", ")")]
        raise ValueError(tok.text)


def matching_angle(toks: list[Tok], i: int) -> int:
    """Index of the ``>`` closing the ``<`` at ``toks[i]`` (``>>`` closes two)."""
    depth = 0
    for j in range(i, len(toks)):
        depth += {"<": 1, ">": -1, ">>": -2}.get(toks[j].text, 0)
        if depth <= 0:
            return j
    raise ValueError("unbalanced <>")


def literal_value(expr: str) -> list[Value] | None:
    """The Debug tokens of a plain-literal Rust expression, or None when it needs compiling."""
    try:
        toks = lex(expr)
        reader = _Literal(toks)
        value = reader.expr()
    except (ValueError, IndexError):
        return None
    return value if reader.i == len(toks) else None


def expected_candidates(plan: Plan) -> dict[tuple[int, int], str]:
    """What must be evaluated without the solution, as {(site, side): expr}; side 0: expected, 1: other."""
    out = {}
    for k, site in enumerate(plan.sites):
        if site.expected is not None and literal_value(site.expected) is None:
            out[(k, 0)] = with_lets(site.expected, site.lets)
            if literal_value(site.actual) is None:
                out[(k, 1)] = with_lets(site.actual, site.lets)
    return out


@dataclass(frozen=True)
class Witness:
    """How a site is judged: the relation and the expected Debug tokens, and whether its sides swapped."""

    kind: str
    expected: list[Value]
    swapped: bool = False


def _witness(site: Site, k: int, evaluated: dict[tuple[int, int], list[Value]]) -> Witness | str:
    """How site ``k`` is judged by value, or why it cannot be (the pattern, for the warning)."""
    if site.why:
        return site.why
    if site.kind in ("true", "false"):
        return Witness(site.kind, TRUE if site.kind == "true" else FALSE)
    assert site.expected is not None
    value = literal_value(site.expected)
    value = value if value is not None else evaluated.get((k, 0))
    if value is not None and not _unordered(value):
        return Witness(site.kind, value)
    other = literal_value(site.actual)
    other = other if other is not None else evaluated.get((k, 1))
    if other is not None and not _unordered(other):
        return Witness(_FLIP[site.kind], other, swapped=True)
    if value is not None or other is not None:
        return f"`{site.call}` compares a hash map or set, whose Debug order changes from run to run"
    return f"`{site.call}`: neither side can be evaluated without the solution"


def witnesses(plan: Plan, evaluated: dict[tuple[int, int], list[Value]]) -> dict[int, Witness]:
    """The sites judged by value (the others run in process, as ``::core`` asserts, and fail their test)."""
    found = {k: _witness(site, k, evaluated) for k, site in enumerate(plan.sites)}
    return {k: w for k, w in found.items() if isinstance(w, Witness)}


def unjudged(plan: Plan, evaluated: dict[tuple[int, int], list[Value]]) -> dict[int, str]:
    """{test: why} for each test with a site that cannot be judged by value (its first such site's pattern)."""
    out: dict[int, str] = {}
    for k, site in enumerate(plan.sites):
        why = _witness(site, k, evaluated)
        if isinstance(why, str):
            out.setdefault(site.test, why)
    return out


def _unordered(value: list[Value]) -> bool:
    """Debug output of hash maps and sets (``{...}``) changes order from one process to the next."""
    return bool(value) and value[0] == ("punct", "{")


# --- generated sources --------------------------------------------------------------------------------------

_PUT = """fn __gw_put(tag: &str, k: usize, text: &str) {
    let hex: ::std::string::String = text.bytes().map(|b| ::std::format!("{:02x}", b)).collect();
    let mut out = ::std::io::stdout().lock();
    let _ = ::std::io::Write::write_all(&mut out, ::std::format!("\\n\\x1egw:{}:{}:{}\\n", tag, k, hex).as_bytes());
    let _ = ::std::io::Write::flush(&mut out);
}
"""


def expected_source(candidates: dict[tuple[int, int], str]) -> tuple[str, dict[tuple[int, int], tuple[int, int]]]:
    """A program (no solution) printing each candidate's Debug; and each candidate's line span (1-based)."""
    lines = ["#![allow(warnings)]", _PUT, "fn main() {", "    ::std::panic::set_hook(::std::boxed::Box::new(|_| {}));"]
    spans: dict[tuple[int, int], tuple[int, int]] = {}
    for (k, side), expr in candidates.items():
        lines.append("    if let Ok(s) = ::std::panic::catch_unwind(|| ::std::format!(\"{:?}\", (")
        first = sum(chunk.count("\n") + 1 for chunk in lines) + 1
        lines.append(expr)
        spans[(k, side)] = (first, first + expr.count("\n"))
        lines.append(f"    ))) {{ __gw_put(\"e\", {2 * k + side}, &s); }}")
    lines.append("}")
    return "\n".join(lines) + "\n", spans


def read_expected(stdout: str, candidates: dict[tuple[int, int], str]) -> dict[tuple[int, int], list[Value]]:
    """The expected values printed by the expected-side program."""
    out = {}
    for tag, k, text in _records(stdout):
        key = (k // 2, k % 2)
        value = debug_tokens(text) if tag == "e" and key in candidates else None
        if value is not None:
            out[key] = value
    return out


def harness_source(plan: Plan, judged: dict[int, Witness], workers: int = 8) -> str:
    """The test program: the solution's crate imported, each test a function, run by ``workers`` threads.

    It links ``gwharness`` (``templates/gwharness.rs``, built once without any solution), which holds the
    generic thread and output code so that each sample's test crate stays small and quick to compile.
    """
    bodies: list[list[str]] = [[] for _ in plan.tests]
    by_test: dict[int, list[tuple[int, Site]]] = {}
    for k, site in enumerate(plan.sites):
        by_test.setdefault(site.test, []).append((k, site))
    for i, text in enumerate(plan.tests):
        pos, parts = 0, []
        for k, site in by_test.get(i, []):
            parts.append(_qualified(text[pos:site.start]))
            witness = judged.get(k)
            if witness is None:
                parts.append(site.call)
            else:
                expr = site.expected if witness.swapped else site.actual
                bind = f": bool = ({expr})" if site.kind in ("true", "false") else f" = &({expr})"
                parts.append(f"{{ let __gw_v{bind}; ::gwharness::witness({k}, &__gw_v); }}")
            pos = site.end
        parts.append(_qualified(text[pos:]))
        bodies[i] = parts
    funcs = "\n".join(f"fn __gw_t{i}() {{\n{''.join(parts).strip()}\n}}" for i, parts in enumerate(bodies))
    table = ", ".join(f"__gw_t{i}" for i in range(len(plan.tests)))
    return (f"#![allow(warnings)]\nuse solution::*;\n{funcs}\nfn main() {{\n"
            f"    static TESTS: &[fn()] = &[{table}];\n    ::gwharness::run(TESTS, {workers});\n}}\n")


_RECORD = re.compile(r"\x1egw:(w|e|end|fail):(\d+):([0-9a-f]*)\n")


def _records(stdout: str) -> list[tuple[str, int, str]]:
    out = []
    for tag, k, hexed in _RECORD.findall(stdout):
        try:
            text = bytes.fromhex(hexed).decode()
        except ValueError:
            continue
        out.append((tag, int(k), text))
    return out


def _holds(witness: Witness, actual: str) -> bool:
    if witness.kind in ("eq", "true", "false"):
        return same_debug(actual, witness.expected)
    if witness.kind == "ne":
        return not same_debug(actual, witness.expected)
    return ordered(actual, witness.expected, {"lt": "<", "le": "<=", "gt": ">", "ge": ">="}[witness.kind])


def judge(plan: Plan, judged: dict[int, Witness], stdout: str, limit_hit: bool) -> Verdict:
    """A test passes when it ended without a panic and each of its sites was judged by value and printed only
    right values; a test with a site that is not judged fails (its end record proves nothing)."""
    ended, failed, seen = set(), set(), {}
    for tag, k, text in _records(stdout):
        if tag == "end":
            ended.add(k)
        elif tag == "fail":
            failed.add(k)
        elif tag == "w":
            seen.setdefault(k, []).append(text)
    unjudgeable = unjudgeable_tests(plan, judged)
    passed = 0
    for i in range(len(plan.tests)):
        ks = [k for k, site in enumerate(plan.sites) if site.test == i]
        if i in ended and i not in failed and i not in unjudgeable and all(
                seen.get(k) and all(_holds(judged[k], v) for v in seen[k]) for k in ks):
            passed += 1
    not_run = any(i not in ended and i not in failed for i in range(len(plan.tests)))
    return Verdict(passed, len(plan.tests), tests_not_run=not_run, limit_hit=limit_hit,
                   tests_unjudgeable=len(unjudgeable))


def unjudgeable_tests(plan: Plan, judged: dict[int, Witness]) -> set[int]:
    """The tests with a site that is not judged by value: each scores 0 whatever the solution prints."""
    return {site.test for k, site in enumerate(plan.sites) if k not in judged}
