"""The countdown task: solvable seeded instances, disjoint splits, and a safe verifier."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import pytest

from groupwise.data.tasks.catalog import build_task
from groupwise.data.tasks.countdown import evaluate_expression, extract_expression, verify_countdown
from groupwise.errors import GroupwiseError


def _key(row: dict) -> tuple:
    return tuple(sorted(row["numbers"])), row["target"]


@pytest.mark.parametrize("num_numbers", [3, 4])
def test_reference_answers_verify(num_numbers: int) -> None:
    rows = build_task("countdown", "train", 300, seed=1, num_numbers=num_numbers)
    assert len(rows) == 300
    for row in rows:
        assert len(row["numbers"]) == num_numbers and all(1 <= n <= 20 for n in row["numbers"])
        assert 1 <= row["target"] <= 100 and row["target"] not in row["numbers"]
        assert str(row["numbers"]) in row["prompt"] and str(row["target"]) in row["prompt"]
        assert verify_countdown(f"<answer>{row['answer']}</answer>", row["numbers"], row["target"])


def test_default_sizes_seeded_and_disjoint() -> None:
    train, heldout = build_task("countdown", "train", None, 0), build_task("countdown", "heldout", None, 0)
    assert (len(train), len(heldout)) == (2000, 200)
    assert {_key(r) for r in train}.isdisjoint(_key(r) for r in heldout)
    assert len({_key(r) for r in train}) == 2000
    assert build_task("countdown", "heldout", None, 0) == heldout
    assert build_task("countdown", "heldout", None, 1) != heldout


def test_bad_params() -> None:
    with pytest.raises(GroupwiseError, match="num_numbers"):
        build_task("countdown", "train", 10, 0, num_numbers=9)


def test_extract_expression() -> None:
    assert extract_expression("<answer>1 + 2</answer> then <answer> (3 * 4) </answer>") == "(3 * 4)"
    assert extract_expression("I think\n\n3 * 8 = 24\n") == "3 * 8"
    assert extract_expression("") == ""


def test_evaluate_expression_is_exact() -> None:
    assert evaluate_expression("(7 - 1) / 4 * 2") == (Fraction(3), [7, 1, 4, 2])
    assert evaluate_expression("1 / 3") == (Fraction(1, 3), [1, 3])


@pytest.mark.parametrize("completion, numbers, target, ok", [
    ("<answer>(8 / 3) * 3 * 3</answer>", [8, 3, 3, 3], 24, True),
    ("<answer>8 * 3</answer>", [8, 3, 5], 24, True),  # not every number has to be used
    ("<answer>8 * 3 = 24</answer>", [8, 3, 5], 24, True),
    ("<answer>8 * 3 * 1</answer>", [8, 3, 5], 24, False),  # 1 is not given
    ("<answer>5 * 5 - 1</answer>", [5, 1, 2], 24, False),  # 5 used twice
    ("<answer>8 * 3</answer>", [8, 3], 25, False),
    ("<answer>8 / (3 - 3)</answer>", [8, 3, 3], 24, False),  # division by zero
    ("<answer>-8 * -3</answer>", [8, 3], 24, False),  # unary minus is not an allowed operator
    ("<answer>8.0 * 3</answer>", [8, 3], 24, False),
    ("<answer>2 ** 3 * 3</answer>", [2, 3, 3], 24, False),
    ("<answer>(" * 300 + "1" + ")" * 300 + "</answer>", [1], 1, False),
    ("", [1], 1, False),
])
def test_verify_countdown(completion: str, numbers: list[int], target: int, ok: bool) -> None:
    assert verify_countdown(completion, numbers, target) is ok


def test_malicious_input_is_never_executed(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    attacks = [f"__import__('os').system('touch {marker}')", f"open('{marker}', 'w').write('x')",
               "(lambda: 24)()", "[24][0]", "24 if True else 0", "exec('x=1')", "(1).__class__"]
    for attack in attacks:
        assert not verify_countdown(f"<answer>{attack}</answer>", [24, 1, 0], 24)
        assert evaluate_expression(attack) is None
    assert not marker.exists()
