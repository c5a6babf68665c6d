"""The leading ``let`` statements of a Rust test, repeated in front of an expected side that names them.

``let expected = 3; assert_eq!(add(1, 2), expected);`` is a common way to write a test. Its expected side
(``expected``) means nothing alone, so the expected-values program evaluates ``{ let expected = 3; expected }``
instead: the value is computed without the solution, as for a literal. A let that names the solution does not
compile there and is dropped with its site, which then cannot be judged by value.

Only a let whose value cannot change before the assertion is repeated: it opens the test (before any other
statement), binds without ``mut`` and holds no interior mutability (``Cell``, ``Mutex``, atomics); the
assertion sits at the test's top level; and no later top-level ``let`` rebinds a name it needs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from groupwise.rewards.judges.rust_lex import Tok, lex

_INTERIOR = re.compile(r"Cell|Atomic|Mutex|RwLock")  # types whose value changes behind a shared binding
_NOT_BOUND = {"mut", "ref", "_"}


@dataclass(frozen=True)
class Let:
    """One leading ``let``: the names it binds, its text, and the names its type and value use."""

    binds: frozenset[str]
    text: str
    uses: frozenset[str]


def _end(toks: list[Tok], level: set[int], j: int) -> int | None:
    """Index of the top-level ``;`` that ends the statement starting at ``toks[j]``."""
    return next((i for i in range(j, len(toks)) if i in level and toks[i].text == ";"), None)


def _pattern_end(toks: list[Tok], level: set[int], j: int, end: int) -> int:
    """Where the pattern of the ``let`` at ``toks[j]`` ends: its top-level ``:`` (a type) or ``=``."""
    return next((i for i in range(j + 1, end) if i in level and toks[i].text in (":", "=")), end)


def _bound(toks: list[Tok]) -> frozenset[str]:
    """The names a pattern binds (``x``, ``(a, mut b)``); capitalised words are types and variants."""
    return frozenset(t.text for t in toks if t.kind == "ident" and t.text not in _NOT_BOUND and not t.text[0].isupper())


def leading_lets(toks: list[Tok], text: str, level: set[int]) -> tuple[list[Let], int]:
    """The lets that open the test and can be repeated, and the index of the first token after them."""
    out, j = [], 0
    while j < len(toks) and toks[j].text == "let":
        end = _end(toks, level, j)
        if end is None:
            break
        names = _pattern_end(toks, level, j, end)
        words = {t.text for t in toks[names:end] if t.kind == "ident"}
        mutable = any(t.text == "mut" for t in toks[j + 1:names]) or any(_INTERIOR.search(w) for w in words)
        if not mutable:
            out.append(Let(_bound(toks[j + 1:names]), text[toks[j].start:toks[end].end], frozenset(words)))
        j = end + 1
    return out, j


def lets_for_site(toks: list[Tok], level: set[int], lets: list[Let], after: int, first: int) -> tuple[Let, ...]:
    """The leading lets an assertion starting at ``toks[first]`` sees unchanged: none when it is nested in a
    block or loop; else those whose names no later top-level ``let`` before it rebinds."""
    if first not in level:
        return ()
    rebound: set[str] = set()
    for i in range(after, first):
        if i in level and toks[i].text == "let":
            end = _end(toks, level, i) or first
            rebound |= _bound(toks[i + 1:_pattern_end(toks, level, i, end)])
    return tuple(let for let in lets if not let.binds & rebound)


def with_lets(expr: str, lets: tuple[Let, ...]) -> str:
    """``expr`` as a block behind the lets it needs (directly or through another let), or as it is."""
    if not lets:
        return expr
    try:
        needed = {t.text for t in lex(expr) if t.kind == "ident"}
    except ValueError:
        return expr
    chosen = []
    for let in reversed(lets):  # a let can only use names bound before it
        if let.binds & needed:
            chosen.append(let.text)
            needed |= let.uses
    return "{ " + " ".join(reversed(chosen)) + "\n" + expr + "\n}" if chosen else expr
