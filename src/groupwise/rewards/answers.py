"""Final answers in the formats datasets and models write them: GSM8K's ``#### N``, ``\\boxed{}``, plain numbers.

``gold_answer`` turns a row's ``answer`` cell into the value `answer_match` and `math_equivalence` compare:
the text after the last ``####`` (GSM8K), else the last ``\\boxed{}`` content (MATH), else the whole cell;
a number written with thousands separators (``1,234``) loses them.
"""

from __future__ import annotations

import re

_BOXED = "\\boxed{"
_MARK = re.compile(r"####[ \t]*([^\n]*)")
_LEADING_NUMBER = re.compile(r"-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?")
_THOUSANDS = re.compile(r"[-+]?\d{1,3}(?:,\d{3})+(?:\.\d+)?")
_NUMBER = re.compile(r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?")


def last_boxed(text: str) -> str | None:
    """The content of the last \\boxed{...} (braces balanced), or None."""
    start = text.rfind(_BOXED)
    if start < 0:
        return None
    depth, begin = 1, start + len(_BOXED)
    for index in range(begin, len(text)):
        depth += {"{": 1, "}": -1}.get(text[index], 0)
        if depth == 0:
            return text[begin:index]
    return None


def without_thousands(text: str) -> str:
    """``1,234.5`` -> ``1234.5``; anything that is not one number with thousands separators is kept as is."""
    text = text.strip()
    return text.replace(",", "") if _THOUSANDS.fullmatch(text) else text


def marked_answer(text: str, *, numbers_only: bool = False) -> str | None:
    """The answer after the last GSM8K ``####`` marker: its leading number (``#### $1,234.`` -> ``1234``),
    else the rest of that line; None without one. `numbers_only` (completions, where ``#### Step 1`` is a
    Markdown heading): the last marker followed by a number."""
    for found in reversed(_MARK.findall(text)):
        rest = found.strip().strip("*").strip().lstrip("$").strip()
        number = _LEADING_NUMBER.match(rest)
        if number:
            return number.group().replace(",", "")
        if not numbers_only:
            return rest.rstrip(".").strip() or None
    return None


def gold_answer(value: object) -> str:
    """The comparable part of a gold answer: after the last ``####``, else the last ``\\boxed{}``, else all."""
    text = str(value).strip()
    marked = marked_answer(text)
    if marked is not None:
        return marked
    boxed = last_boxed(text)
    return without_thousands(boxed if boxed is not None else text)


def answer_gold(row: dict) -> str | None:
    """A row's gold as `answer_match` and `math_equivalence` compare with it: `gold_answer` of its `answer`."""
    return None if row.get("answer") is None else gold_answer(row["answer"])


def is_number(text: str) -> bool:
    """Whether `text` is one plain number (``-3``, ``0.5``, ``1e3``) once thousands separators are removed."""
    return _NUMBER.fullmatch(without_thousands(text)) is not None
