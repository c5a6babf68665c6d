"""What a reward function may return besides plain floats: per-sample diagnostics for the step metrics."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from groupwise.rewards.judges.verdict import Verdict


class RewardValues(list):
    """A reward function's values (one float or None per completion), plus ``diagnostics``: per-sample
    indicators (1.0/0.0, None when not scored) that ``score_batch`` keeps as ``reward/<function>/<name>``
    step metrics, the mean over the samples that have one. A plain list is still a valid return value."""

    def __init__(self, values: Iterable[float | None],
                 diagnostics: Mapping[str, Sequence[float | None]] | None = None) -> None:
        super().__init__(values)
        self.diagnostics = {k: list(v) for k, v in (diagnostics or {}).items()}


def _flag(value: bool | None) -> float | None:
    return None if value is None else float(value)


def verdict_values(verdicts: Sequence[Verdict | None], failed: Sequence[bool]) -> RewardValues:
    """Scores (partial credit) of code-test verdicts; None where a row has no tests. ``failed``: the samples
    whose evaluation itself failed (scored 0). ``tests_unjudgeable`` (a sample with a test that no value can
    judge, so it scored 0) is kept only where the judge reports it (Rust)."""
    diagnostics = {
        "tests_not_run": [_flag(None if v is None else v.tests_not_run) for v in verdicts],
        "limit_hit": [_flag(None if v is None else v.limit_hit) for v in verdicts],
        "sample_errors": [_flag(None if v is None else bool(f)) for v, f in zip(verdicts, failed, strict=True)]}
    unjudgeable = [None if v is None or v.tests_unjudgeable is None else v.tests_unjudgeable > 0 for v in verdicts]
    if any(u is not None for u in unjudgeable):
        diagnostics["tests_unjudgeable"] = [_flag(u) for u in unjudgeable]
    return RewardValues([None if v is None else v.score for v in verdicts], diagnostics)
