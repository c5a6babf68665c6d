"""`arithmetic`: seeded random expressions like `7 + 5` with disjoint train and held-out splits."""

from __future__ import annotations

import itertools
import random
from typing import Any

from groupwise.data.tasks.registry import register_task
from groupwise.errors import GroupwiseError

OPERATORS = {"+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b}
DEFAULT_TRAIN_SIZE = 2000
QUESTION = "What is {expression}?"


def _operand_range(digits: int, max_operand: int | None = None) -> range:
    if max_operand is not None:
        return range(0, max_operand + 1)
    return range(0, 10) if digits == 1 else range(10 ** (digits - 1), 10**digits)


def _evaluate(numbers: tuple[int, ...], ops: tuple[str, ...]) -> int:
    """Left to right; with `*` present, Python precedence via eval of a safe, generated expression."""
    expression = _render(numbers, ops)
    return int(eval(expression, {"__builtins__": {}}))  # noqa: S307 - only digits and + - * built here


def _render(numbers: tuple[int, ...], ops: tuple[str, ...]) -> str:
    parts = [str(numbers[0])]
    for op, number in zip(ops, numbers[1:], strict=True):
        parts += [op, str(number)]
    return " ".join(parts)


def _split_of(key: tuple, seed: int, heldout_share: float) -> str:
    """Deterministic assignment of each distinct problem to one split, so the splits never overlap."""
    return "heldout" if random.Random(f"{seed}:{key}").random() < heldout_share else "train"


@register_task("arithmetic", rewards=[{"name": "answer_match", "params": {"extract": "tag_or_last_number"}}])
def build_arithmetic(split: str, size: int | None, seed: int, *, digits: int = 1, operands: int = 2,
                     operators: str = "+", max_operand: int | None = None,
                     heldout_share: float = 0.2, question: str = QUESTION) -> list[dict[str, Any]]:
    """Problems over `operands` numbers of `digits` digits (or 0..max_operand) joined by `operators`."""
    bad_range = max_operand is not None and max_operand < 1
    if bad_range or digits < 1 or operands < 2 or not operators or any(op not in OPERATORS for op in operators):
        raise GroupwiseError(f"bad arithmetic params digits={digits} operands={operands} operators='{operators}'",
                             "use digits >= 1, operands >= 2 and operators from '+-*'")
    size = size or DEFAULT_TRAIN_SIZE
    operand_range = _operand_range(digits, max_operand)
    numbers_space = [tuple(operand_range)] * operands
    ops_space = [tuple(operators)] * (operands - 1)
    universe = len(operand_range) ** operands * len(operators) ** (operands - 1)
    rng = random.Random(f"arithmetic:{seed}:{split}")
    if universe <= 200_000:  # small spaces: enumerate, so every distinct problem is reachable
        keys = [k for k in itertools.product(itertools.product(*numbers_space), itertools.product(*ops_space))
                if _split_of(k, seed, heldout_share) == split]
        rng.shuffle(keys)
        chosen = [keys[i % len(keys)] for i in range(size)]
    else:
        chosen = []
        while len(chosen) < size:
            key = (tuple(rng.choice(r) for r in numbers_space), tuple(rng.choice(o) for o in ops_space))
            if _split_of(key, seed, heldout_share) == split:
                chosen.append(key)
    return [_row(numbers, ops, question) for numbers, ops in chosen]


def _row(numbers: tuple[int, ...], ops: tuple[str, ...], question: str) -> dict[str, Any]:
    expression = _render(numbers, ops)
    return {"prompt": question.format(expression=expression), "answer": str(_evaluate(numbers, ops)),
            "expression": expression}
