"""`countdown`: reach a target with given numbers (each at most once), + - * / and parentheses.

Instances are generated solvable: the target is the value of a random expression over all the numbers
(integer at every step, positive, not one of the numbers). Train and held-out are disjoint by
(sorted numbers, target). ``verify_countdown`` checks an answer safely (``ast``, never ``eval``); the
``countdown_verify`` reward in ``groupwise.rewards.text`` wraps it.
"""

from __future__ import annotations

import ast
import random
import re
from collections import Counter
from fractions import Fraction
from typing import Any

from groupwise.data.tasks.registry import register_task
from groupwise.errors import GroupwiseError

DEFAULT_SIZES = {"train": 2000, "heldout": 200}
MAX_EXPRESSION_CHARS = 200
TOLERANCE = Fraction(1, 10**6)
QUESTION = ("Using the numbers {numbers}, write an expression that equals {target}. Use each number at most "
            "once, with only + - * / and parentheses. Put the expression inside <answer></answer>.")
_ANSWER = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)
_OPERATORS = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/"}


# ---- generation ------------------------------------------------------------------------------------------


@register_task("countdown", rewards=[{"name": "countdown_verify"}])
def build_countdown(split: str, size: int | None, seed: int, *, num_numbers: int = 3, max_number: int = 20,
                    max_target: int = 100, heldout_share: float = 0.1,
                    question: str = QUESTION) -> list[dict[str, Any]]:
    """Solvable countdown problems: rows with prompt, numbers, target and a reference expression as answer."""
    _check_params(split, num_numbers, max_number, max_target, heldout_share)
    size = size or DEFAULT_SIZES[split]
    rng = random.Random(f"countdown:{seed}:{split}")
    found: dict[tuple, tuple[list[int], int, str]] = {}
    for _ in range(size * 50):
        if len(found) >= size:
            break
        numbers = [rng.randint(1, max_number) for _ in range(num_numbers)]
        solution = _random_solution(numbers, max_target, rng)
        if solution is not None:
            key = (tuple(sorted(numbers)), solution[0])
            if key not in found and _split_of(key, seed, heldout_share) == split:
                found[key] = (numbers, *solution)
    if not found:
        raise GroupwiseError(f"no countdown problems for max_number={max_number}, max_target={max_target}",
                             "raise max_number or max_target")
    problems = list(found.values())
    return [_row(*problems[i % len(problems)], question) for i in range(size)]


def _check_params(split: str, num_numbers: int, max_number: int, max_target: int,
                  heldout_share: float) -> None:
    """Reject an unknown split or out-of-range parameters with one clear error."""
    if split not in DEFAULT_SIZES:
        raise GroupwiseError(f"unknown split '{split}' for task countdown", "use 'train' or 'heldout'")
    if not 2 <= num_numbers <= 6 or max_number < 1 or max_target < 1 or not 0 < heldout_share < 1:
        raise GroupwiseError(f"bad countdown params num_numbers={num_numbers} max_number={max_number} "
                             f"max_target={max_target} heldout_share={heldout_share}",
                             "use num_numbers 2..6 (3 or 4 usual), max_number and max_target >= 1, "
                             "0 < heldout_share < 1")


def _split_of(key: tuple, seed: int, heldout_share: float) -> str:
    """Deterministic assignment of each distinct problem to one split, so the splits never overlap."""
    return "heldout" if random.Random(f"{seed}:{key}").random() < heldout_share else "train"


def _random_solution(numbers: list[int], max_target: int, rng: random.Random) -> tuple[int, str] | None:
    """(target, expression) from combining all numbers in a random tree, or None if the value is unusable."""
    items = [(n, str(n)) for n in numbers]
    while len(items) > 1:
        left = items.pop(rng.randrange(len(items)))
        right = items.pop(rng.randrange(len(items)))
        items.append(_combine(left, right, rng))
    target, expression = items[0]
    if not 1 <= target <= max_target or target in numbers:
        return None
    return target, _strip_parens(expression)


def _combine(left: tuple[int, str], right: tuple[int, str], rng: random.Random) -> tuple[int, str]:
    """A random integer-valued operation on two subexpressions (division only when exact)."""
    ops = ["+", "-", "*"] + (["/"] if right[0] != 0 and left[0] % right[0] == 0 else [])
    op = rng.choice(ops)
    a, b = left[0], right[0]
    value = {"+": a + b, "-": a - b, "*": a * b}[op] if op != "/" else a // b
    return value, f"({left[1]} {op} {right[1]})"


def _strip_parens(expression: str) -> str:
    """Drop the outermost pair of parentheses the generator adds."""
    return expression[1:-1] if expression.startswith("(") else expression


def _row(numbers: list[int], target: int, expression: str, question: str) -> dict[str, Any]:
    return {"prompt": question.format(numbers=numbers, target=target), "numbers": list(numbers),
            "target": target, "answer": expression}


# ---- verification ----------------------------------------------------------------------------------------


def extract_expression(completion: str) -> str:
    """The last <answer> tag's content, else the last non-empty line; a trailing '= value' is dropped."""
    tags = _ANSWER.findall(completion)
    if tags:
        text = tags[-1]
    else:
        lines = [line for line in completion.splitlines() if line.strip()]
        text = lines[-1] if lines else ""
    return text.split("=")[0].strip()


def evaluate_expression(expression: str) -> tuple[Fraction, list[int]] | None:
    """(exact value, numbers used) of an arithmetic expression, or None if it is anything else or invalid."""
    if not expression or len(expression) > MAX_EXPRESSION_CHARS:
        return None
    try:
        tree = ast.parse(expression, mode="eval")
        used: list[int] = []
        return _value(tree.body, used), used
    except (SyntaxError, ValueError, ZeroDivisionError, RecursionError, MemoryError):
        return None


def _value(node: ast.AST, used: list[int]) -> Fraction:
    """The exact value of an allowed node: non-negative integer literals and binary + - * /."""
    if isinstance(node, ast.Constant) and type(node.value) is int and node.value >= 0:
        used.append(node.value)
        return Fraction(node.value)
    if isinstance(node, ast.BinOp) and type(node.op) in _OPERATORS:
        left, right = _value(node.left, used), _value(node.right, used)
        if isinstance(node.op, ast.Add):
            return left + right
        if isinstance(node.op, ast.Sub):
            return left - right
        if isinstance(node.op, ast.Mult):
            return left * right
        return left / right
    raise ValueError(f"not allowed in a countdown answer: {type(node).__name__}")


def verify_countdown(completion: str, numbers: list[int], target: int | float | str) -> bool:
    """Whether the completion's expression uses given numbers only (each at most once) and equals target."""
    result = evaluate_expression(extract_expression(completion))
    if result is None:
        return False
    value, used = result
    if Counter(used) - Counter(int(n) for n in numbers):
        return False
    try:
        return abs(value - Fraction(str(target))) < TOLERANCE
    except (ValueError, ZeroDivisionError):
        return False
