"""The ``tests`` column from any file format, and MBPP's / HumanEval's test columns mapped onto it.

A cell may be a list of test statements, a JSON-encoded list, or a Python-repr list (what pandas writes to
CSV), read with ``ast.literal_eval`` (literals only, never evaluated as code). Anything else is an error,
never a "test": a test that is only a literal (``"['assert f(1) == 2']"`` kept as one string) would pass
against any code.
"""

from __future__ import annotations

import ast
import json
from typing import Any

MBPP_TESTS = "test_list"  # MBPP: a list of assert statements (+ optional test_setup_code run before each)
MBPP_SETUP = "test_setup_code"
MBPP_IMPORTS = "test_imports"  # sanitized MBPP: a list of import lines
HUMANEVAL_TEST, HUMANEVAL_ENTRY = "test", "entry_point"  # HumanEval: `def check(candidate): ...` + its name


class InvalidTestsError(ValueError):
    """A tests value that is not a list of test statements; the message says what it is instead."""


def parse_tests(value: Any, *, single: bool = False) -> list[str]:
    """The test statements in one cell (None or an empty string: none); `single`: a plain string is one test."""
    if value is None:
        return []
    if isinstance(value, str):
        return _from_text(value, single)
    if isinstance(value, list | tuple):
        return _statements(list(value))
    raise InvalidTestsError(f"is a {type(value).__name__}, not a list of test statements")


def _from_text(text: str, single: bool) -> list[str]:
    """A JSON or Python-repr list written as text; otherwise one test (`single`) or an error."""
    if not text.strip():
        return []
    try:
        value = json.loads(text)
    except ValueError:
        value = _literal(text)
    if isinstance(value, list | tuple):
        return _statements(list(value))
    if value is not _NOT_A_LITERAL:
        raise InvalidTestsError(f"is a {type(value).__name__} written as text, not a list of test statements")
    if single:
        return [text]
    raise InvalidTestsError("is a string that is not a list (neither JSON nor a Python list)")


_NOT_A_LITERAL = object()


def _literal(text: str) -> Any:
    """``ast.literal_eval`` of `text` (never code execution), or _NOT_A_LITERAL when it is not one literal."""
    try:
        return ast.literal_eval(text.strip())
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return _NOT_A_LITERAL


def _statements(items: list[Any]) -> list[str]:
    """Check each item is a test statement, not a non-string or a bare literal; blank items are dropped."""
    tests = []
    for number, item in enumerate(items, start=1):
        if not isinstance(item, str):
            raise InvalidTestsError(f"item {number} is a {type(item).__name__}, not a test statement string")
        if not item.strip():
            continue
        literal = _literal(item)
        if literal is not _NOT_A_LITERAL:
            raise InvalidTestsError(f"item {number} is only a {type(literal).__name__} literal ({item.strip()[:60]!r}),"
                                   " not a test statement: it would pass against any code")
        tests.append(item)
    return tests


def dataset_tests_source(row: dict[str, Any]) -> str | None:
    """The column MBPP- or HumanEval-style tests come from (`test_list`, or `test` with `entry_point`), or None."""
    if MBPP_TESTS in row:
        return MBPP_TESTS
    return HUMANEVAL_TEST if HUMANEVAL_TEST in row and HUMANEVAL_ENTRY in row else None


def dataset_tests(row: dict[str, Any]) -> list[str] | None:
    """Tests from MBPP's ``test_list`` (after its setup/imports) or HumanEval's ``test`` + ``entry_point``."""
    source = dataset_tests_source(row)
    if source == MBPP_TESTS:
        tests = parse_tests(row[MBPP_TESTS])
        setup = [*parse_tests(row.get(MBPP_IMPORTS)), *parse_tests(row.get(MBPP_SETUP), single=True)]
        return ["\n".join([*setup, test]) for test in tests]
    if source == HUMANEVAL_TEST:
        check, entry = row[HUMANEVAL_TEST], row[HUMANEVAL_ENTRY]
        if not isinstance(check, str) or "def check(" not in check or not isinstance(entry, str) or not entry:
            raise InvalidTestsError(f"is not a HumanEval `def check(candidate)` block with an '{HUMANEVAL_ENTRY}' "
                                   "function name")
        return [humaneval_test(check, entry)]
    return None


def humaneval_test(check: str, entry_point: str) -> str:
    """One test statement from HumanEval's ``check(candidate)`` block: define it, then call it on the function."""
    return f"{check.rstrip()}\n\n\ncheck({entry_point.strip()})\n"
