"""Text and math rewards: `think_answer_format`, `math_equivalence`, `soft_overlong`, `length_penalty`,
`countdown_verify`.

Each factory takes the config's ``params`` and returns a reward function with TRL's signature
``fn(prompts, completions, completion_ids=None, **columns) -> list[float]``.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Sequence

from groupwise.data.tasks.countdown import verify_countdown
from groupwise.errors import GroupwiseError
from groupwise.rewards.answers import answer_gold, gold_answer, last_boxed, marked_answer
from groupwise.rewards.registry import register_reward

_FREE = r"(?:(?!</?think>|</?answer>).)*"  # text without any think/answer tag
_STRICT_FORMAT = re.compile(rf"\s*<think>{_FREE}</think>\s*<answer>{_FREE}</answer>\s*", re.DOTALL)
_LOOSE_FORMAT = re.compile(r"<think>.*?</think>.*?<answer>.*?</answer>", re.DOTALL)
_ANSWER_TAG = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)
_BOXED = "\\boxed{"
MATH_TIMEOUT_S = 5


def _column(columns: dict[str, object], name: str, reward: str, size: int) -> Sequence:
    """A column the reward needs, aligned with the completions; a clear error when it is missing."""
    values = columns.get(name)
    if values is None:
        raise GroupwiseError(f"reward '{reward}' needs a '{name}' column, which the data does not have",
                             f"add '{name}' to the data (or map one with data.columns)")
    if len(values) != size:  # type: ignore[arg-type]
        raise ValueError(f"column '{name}' has {len(values)} values for {size} completions")  # type: ignore[arg-type]
    return values  # type: ignore[return-value]


def _lengths(completions: Sequence[str], completion_ids: Sequence[Sequence[int]] | None) -> list[int]:
    """Completion lengths in tokens: len of each id list, or whitespace-separated words without ids."""
    if completion_ids is None:
        return [len(text.split()) for text in completions]
    return [len(ids) for ids in completion_ids]


# ---- format ----------------------------------------------------------------------------------------------


@register_reward("think_answer_format")
def make_think_answer_format(strict: bool = True):
    """1.0 for DeepSeek-R1 format '<think>...</think> <answer>...</answer>' (strict: nothing else around)."""

    def think_answer_format(prompts: Sequence, completions: Sequence[str], completion_ids=None,
                            **_: object) -> list[float]:
        if strict:
            return [1.0 if _STRICT_FORMAT.fullmatch(text) else 0.0 for text in completions]
        return [1.0 if _LOOSE_FORMAT.search(text) else 0.0 for text in completions]

    return think_answer_format


# ---- math ------------------------------------------------------------------------------------------------


def final_answer(completion: str) -> str | None:
    """The last <answer> tag's content, else the last \\boxed{} content, else the GSM8K `#### N`, else None."""
    tags = _ANSWER_TAG.findall(completion)
    if tags:
        return tags[-1].strip()
    boxed = last_boxed(completion)
    return boxed.strip() if boxed is not None else marked_answer(completion, numbers_only=True)


def _as_latex(text: str) -> str:
    """Math mode around bare text so math-verify reads it as LaTeX (``x^2`` -> ``$x^2$``)."""
    if "$" in text or _BOXED in text or "\\(" in text or "\\[" in text:
        return text
    return f"${text}$"


def _math_timeout() -> int | None:
    """math-verify's timeouts use SIGALRM, which only works in the main thread: None (off) elsewhere."""
    return MATH_TIMEOUT_S if threading.current_thread() is threading.main_thread() else None


def _parse(text: str) -> list:
    from math_verify import parse

    return parse(text, parsing_timeout=_math_timeout())  # type: ignore[arg-type]


def parse_math(text: str) -> list:
    """math-verify's reading of a bare answer (``x^2``, ``\\frac{1}{2}``, ``42``); empty when it reads nothing."""
    return _parse(_as_latex(text))


def math_equal(completion: str, gold: object) -> bool:
    """Whether the completion's final answer is mathematically equal to `gold`; False on any failure."""
    from math_verify import verify

    try:
        expected = parse_math(gold_answer(gold))
        answer = final_answer(completion)
        predicted = parse_math(answer) if answer is not None else _parse(completion)
        if answer is None and not predicted:
            predicted = parse_math(completion.strip())
        if not expected or not predicted:
            return False
        return bool(verify(expected, predicted, timeout_seconds=_math_timeout()))
    except Exception:  # noqa: BLE001 - a reward never raises on what the model wrote
        return False


@register_reward("math_equivalence")
def make_math_equivalence():
    """1.0 when the final answer (<answer> tag, last \\boxed{}, `#### N`, or whole text) equals `answer`."""

    def math_equivalence(prompts: Sequence, completions: Sequence[str], completion_ids=None,
                         **columns: object) -> list[float]:
        answers = _column(columns, "answer", "math_equivalence", len(completions))
        return [1.0 if gold is not None and math_equal(text, gold) else 0.0
                for text, gold in zip(completions, answers, strict=True)]

    math_equivalence.required_columns = ("answer",)  # type: ignore[attr-defined]
    math_equivalence.reads_gold = answer_gold  # type: ignore[attr-defined]
    return math_equivalence


# ---- length ----------------------------------------------------------------------------------------------


@register_reward("soft_overlong")
def make_soft_overlong(max_len: int, cache_len: int):
    """DAPO soft overlong punishment (arXiv 2503.14476 eq. 13) over completion token lengths."""
    if not 0 < cache_len <= max_len:
        raise GroupwiseError(f"soft_overlong needs 0 < cache_len <= max_len, got cache_len={cache_len} "
                             f"max_len={max_len}", "set params.cache_len below params.max_len")

    def soft_overlong(prompts: Sequence, completions: Sequence[str], completion_ids=None,
                      **_: object) -> list[float]:
        import torch

        from groupwise.algorithms import soft_overlong_penalty

        if completion_ids is None:
            raise GroupwiseError("reward 'soft_overlong' needs completion_ids (token lengths)",
                                 "call it with completion_ids, as the trainer does")
        lengths = torch.tensor(_lengths(completions, completion_ids), dtype=torch.long)
        return soft_overlong_penalty(lengths, max_len, cache_len).tolist()

    return soft_overlong


@register_reward("length_penalty")
def make_length_penalty(target: int, scale: float = 1.0):
    """-scale * max(0, L - target) / target for L tokens (whitespace words without completion_ids)."""
    if target < 1:
        raise GroupwiseError(f"length_penalty target must be >= 1 token, got {target}",
                             "set params.target >= 1")

    def length_penalty(prompts: Sequence, completions: Sequence[str], completion_ids=None,
                       **_: object) -> list[float]:
        return [-scale * max(0, length - target) / target for length in _lengths(completions, completion_ids)]

    return length_penalty


# ---- countdown -------------------------------------------------------------------------------------------


@register_reward("countdown_verify")
def make_countdown_verify():
    """1.0 when the <answer> expression uses only the row's `numbers` (each once) and equals `target`."""

    def countdown_verify(prompts: Sequence, completions: Sequence[str], completion_ids=None,
                         **columns: object) -> list[float]:
        numbers = _column(columns, "numbers", "countdown_verify", len(completions))
        targets = _column(columns, "target", "countdown_verify", len(completions))
        return [1.0 if verify_countdown(text, list(given), goal) else 0.0
                for text, given, goal in zip(completions, numbers, targets, strict=True)]

    countdown_verify.required_columns = ("numbers", "target")  # type: ignore[attr-defined]
    return countdown_verify
