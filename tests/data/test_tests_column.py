"""The `tests` column from any file format: lists, JSON and Python-repr text, MBPP and HumanEval columns."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from groupwise.config.schema import DataConfig
from groupwise.data.files import load_file_rows
from groupwise.data.tests_column import InvalidTestsError, dataset_tests, humaneval_test, parse_tests
from groupwise.errors import GroupwiseError
from groupwise.rewards import resolve_reward

TESTS = ["assert add(1, 2) == 3", "assert add(0, 5) == 5"]


@pytest.mark.parametrize("cell", [
    TESTS, tuple(TESTS), '["assert add(1, 2) == 3", "assert add(0, 5) == 5"]',
    "['assert add(1, 2) == 3', 'assert add(0, 5) == 5']", " ['assert add(1, 2) == 3', 'assert add(0, 5) == 5', ''] ",
])
def test_cells_in_every_written_form(cell: object) -> None:
    assert parse_tests(cell) == TESTS


def test_empty_cells_hold_no_tests() -> None:
    assert parse_tests(None) == parse_tests("") == parse_tests("[]") == parse_tests([]) == []


@pytest.mark.parametrize("cell, reason", [
    ("assert add(1, 2) == 3", "is a string that is not a list"),
    ('"assert add(1, 2) == 3"', "is a str written as text"),
    ("42", "is a int written as text"),
    ({"a": 1}, "is a dict"),
    ([1, 2], "item 1 is a int"),
    (["['assert add(1, 2) == 3']"], "item 1 is only a list literal"),
    (["assert add(1, 2) == 3", "'assert x'"], "item 2 is only a str literal"),
    ("[__import__('os').system('touch /tmp/pwned')]", "is a string that is not a list"),
])
def test_anything_else_is_not_a_test(cell: object, reason: str) -> None:
    with pytest.raises(InvalidTestsError, match=reason.replace("(", r"\(")):
        parse_tests(cell)


def test_single_string_is_one_test_only_when_asked() -> None:
    assert parse_tests("assert f() == 1", single=True) == ["assert f() == 1"]
    with pytest.raises(InvalidTestsError):
        parse_tests("'assert f() == 1'", single=True)


def test_mbpp_and_humaneval_columns_map_onto_tests() -> None:
    mbpp = {"text": "Write add.", "test_list": "['assert add(1, 2) == 3']", "test_setup_code": "import math",
            "test_imports": []}
    assert dataset_tests(mbpp) == ["import math\nassert add(1, 2) == 3"]
    check = "def check(candidate):\n    assert candidate(1, 2) == 3\n"
    assert dataset_tests({"prompt": "def add(a, b):", "test": check, "entry_point": "add"}) == [
        "def check(candidate):\n    assert candidate(1, 2) == 3\n\n\ncheck(add)\n"]
    assert dataset_tests({"prompt": "x", "test": "unrelated"}) is None  # no entry_point: not HumanEval
    with pytest.raises(InvalidTestsError, match="HumanEval"):
        dataset_tests({"prompt": "x", "test": "assert add(1, 2) == 3", "entry_point": "add"})


def _csv(path: Path, rows: list[dict[str, str]]) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def test_csv_carries_tests_as_repr_or_json(tmp_path: Path) -> None:
    """The Found case: a pandas-written (repr) or JSON tests column in CSV failed with 'tests is a str'."""
    path = _csv(tmp_path / "d.csv", [{"prompt": "add", "tests": str(TESTS)},
                                     {"prompt": "add", "tests": '["assert add(1, 2) == 3"]'}])
    rows = load_file_rows(DataConfig(task=None, path=str(path), heldout_fraction=0.0), "train")
    assert [row["tests"] for row in rows] == [TESTS, TESTS[:1]]


def test_bad_tests_cell_names_column_row_and_fix(tmp_path: Path) -> None:
    path = _csv(tmp_path / "d.csv", [{"prompt": "a", "test_list": str(TESTS)}, {"prompt": "b", "test_list": "7"}])
    with pytest.raises(GroupwiseError) as err:
        load_file_rows(DataConfig(task=None, path=str(path), heldout_fraction=0.0), "train")
    message = str(err.value)
    assert "row 2" in message and "column 'test_list'" in message and "JSON list" in message


def test_repr_list_string_is_not_one_passing_test() -> None:
    """The Found case: a repr-list string reaching code_tests was one 'test' (a list literal): wrong code got 1.0."""
    reward = resolve_reward("code_tests", {"sandbox": {"timeout_s": 10}})
    right, wrong = "```python\ndef add(a, b):\n    return a + b\n```", "```python\ndef add(a, b):\n    return 0\n```"
    cell = str(TESTS)
    assert reward(["", ""], [right, wrong], tests=[cell, cell]) == [1.0, pytest.approx(0.0)]
    with pytest.raises(GroupwiseError, match="item 1 is only a list literal"):
        reward([""], [wrong], tests=[[cell]])


def test_humaneval_test_runs_check_on_the_entry_point() -> None:
    reward = resolve_reward("code_tests", {"sandbox": {"timeout_s": 10}})
    test = humaneval_test("def check(candidate):\n    assert candidate(2, 3) == 5\n", "add")
    right = "```python\ndef add(a, b):\n    return a + b\n```"
    wrong = right.replace("a + b", "a * b")
    assert reward(["", ""], [right, wrong], tests=[[test], [test]]) == [1.0, 0.0]
