"""Before training: do the gold answers suit the chosen answer reward? A warning when most of them cannot match.

`answer_match` compares the completion's final number (or ``<answer>`` tag, or ``#### N``) with the gold's
final answer (``rewards.answers.gold_answer``), so a gold that is a whole worked solution with no ``####`` or
``\\boxed{}`` can never match and every sample scores 0. `math_equivalence` needs a gold that math-verify parses.
"""

from __future__ import annotations

from typing import Any

from groupwise.rewards.answers import gold_answer, is_number
from groupwise.rewards.compute import configured_reward_specs
from groupwise.rewards.text import parse_math

ANSWER_REWARDS = ("answer_match", "math_equivalence")
CHECKED_ROWS = 50
SHORT_ANSWER_CHARS = 50  # a tag/whole answer longer than this (or on several lines) is a solution, not an answer


def comparable(answer: Any, reward: str, params: dict[str, Any]) -> bool:
    """Whether `reward` can ever match a completion against this gold `answer`."""
    if answer is None:
        return False
    gold = gold_answer(answer)
    if not gold:
        return False
    if reward == "math_equivalence":
        try:
            return bool(parse_math(gold))
        except Exception:  # noqa: BLE001 - math-verify failing on a gold means it cannot compare it
            return False
    if is_number(gold):
        return True
    short = "\n" not in gold and len(gold) <= SHORT_ANSWER_CHARS
    return params.get("extract", "tag_or_last_number") != "last_number" and short


def answer_format_warning(rows: list[dict[str, Any]], cfg: Any) -> str | None:
    """One line naming the reward, a sample row and the fix when most checked gold answers cannot match."""
    sample = rows[:CHECKED_ROWS]
    for spec in configured_reward_specs(cfg):
        if spec.name not in ANSWER_REWARDS or not sample:
            continue
        bad = [row for row in sample if not comparable(row.get("answer"), spec.name, spec.params)]
        if 2 * len(bad) > len(sample):
            return _message(spec.name, spec.params, bad, len(sample))
    return None


def _message(reward: str, params: dict[str, Any], bad: list[dict[str, Any]], checked: int) -> str:
    row = bad[0]
    prompt = _short(row.get("prompt"))
    if all("answer" not in r for r in bad):
        return (f"reward '{reward}' needs an 'answer' column, but {len(bad)} of {checked} rows checked have none "
                f"(e.g. prompt {prompt}); fix: map one with data.columns (e.g. {{answer: solution}}), or set "
                "rewards.functions to a reward that fits the data (code_tests for rows with tests)")
    wants = ("an answer math-verify can parse (a number or LaTeX, `#### N` or `\\boxed{...}` at the end)"
             if reward == "math_equivalence" else
             "a number" if params.get("extract") == "last_number" else
             f"a number or a short one-line answer (up to {SHORT_ANSWER_CHARS} characters)")
    return (f"reward '{reward}' cannot compare {len(bad)} of {checked} gold answers checked: it needs {wants}, "
            f"e.g. prompt {prompt} has answer {_short(row.get('answer'))}; fix: end each answer with `#### N` "
            "or `\\boxed{N}`, give the final answer alone, or map the column that holds it with data.columns "
            "(see docs/data.md)")


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value if not isinstance(value, str) else " ".join(value.split()))
    return text if len(text) <= limit else text[: limit - 4] + "...'"
