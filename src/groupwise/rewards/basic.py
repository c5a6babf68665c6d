"""Answer and format rewards: `answer_match` and `format_regex`."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

from groupwise.errors import GroupwiseError
from groupwise.rewards.answers import answer_gold, gold_answer, marked_answer
from groupwise.rewards.registry import register_reward

NUMBER = re.compile(r"-?\d+(?:,\d{3})*(?:\.\d+)?")
TAG = re.compile(r"<answer>(.*?)</answer>", re.S)


def last_number(text: str) -> str | None:
    """The last number in `text` (thousands separators removed), or None."""
    found = NUMBER.findall(text)
    return found[-1].replace(",", "") if found else None


def tagged_answer(text: str) -> str | None:
    """The content of the last <answer>...</answer> tag, stripped, or None."""
    found = TAG.findall(text)
    return found[-1].strip() if found else None


def extract_answer(text: str, mode: str) -> str | None:
    if mode == "last_number":
        return last_number(text)
    if mode == "tag":
        return tagged_answer(text)
    if mode == "tag_or_last_number":
        for found in (tagged_answer(text), marked_answer(text, numbers_only=True)):
            if found is not None:
                return found
        return last_number(text)
    if mode == "whole":
        return text.strip()
    raise GroupwiseError(f"unknown answer extraction '{mode}'", "use last_number, tag, tag_or_last_number or whole")


def answers_equal(predicted: str | None, expected: object, *, numeric: bool, tolerance: float) -> bool:
    if predicted is None:
        return False
    if numeric:
        try:
            got, want = float(predicted.replace(",", "")), float(str(expected).replace(",", ""))
        except ValueError:
            return predicted.strip() == str(expected).strip()
        return math.isclose(got, want, rel_tol=0.0, abs_tol=tolerance)
    return predicted.strip() == str(expected).strip()


@register_reward("answer_match")
def make_answer_match(extract: str = "tag_or_last_number", numeric: bool = True, tolerance: float = 1e-6,
                      correct: float = 1.0, wrong: float = 0.0):
    """1.0 when the extracted answer equals the `answer` column's final answer (`#### N`, `\\boxed{}` or the
    whole cell), numerically within `tolerance`, or exactly."""
    extract_answer("", extract)  # validate the mode up front: a bad config fails before any rollout

    def answer_match(prompts: Sequence, completions: Sequence[str], completion_ids=None, *, answer: Sequence,
                     **_: object) -> list[float]:
        return [correct if answers_equal(extract_answer(c, extract), gold_answer(a), numeric=numeric,
                                         tolerance=tolerance)
                else wrong for c, a in zip(completions, answer, strict=True)]

    answer_match.reads_gold = answer_gold  # type: ignore[attr-defined]
    return answer_match


@register_reward("format_regex")
def make_format_regex(pattern: str, score: float = 1.0, full_match: bool = False):
    """`score` when the completion matches `pattern` (re.search, or re.fullmatch with full_match), else 0."""
    try:
        compiled = re.compile(pattern, re.S)
    except re.error as err:
        raise GroupwiseError(f"format_regex pattern {pattern!r} is not a valid regex: {err}",
                             "fix the pattern in rewards.functions[].params.pattern") from err
    match = compiled.fullmatch if full_match else compiled.search

    def format_regex(prompts: Sequence, completions: Sequence[str], completion_ids=None, **_: object) -> list[float]:
        return [score if match(c.strip() if full_match else c) else 0.0 for c in completions]

    return format_regex
