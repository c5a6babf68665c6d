"""`groupwise data check`: the data as a run will use it, before any training.

It shows the first rows as the model will see them (template, system prompt, chat template), the gold each
reward reads from them, and the parsed tests; and when the data carries reference solutions (MBPP's `code`,
HumanEval's `canonical_solution`), it scores them with the configured rewards, so that a broken reward or a
misread test shows as "reference solutions score 0.00" instead of a run that learns nothing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from groupwise.config.paths import check_local_paths
from groupwise.config.schema import Config
from groupwise.data.prompts import render_prompts, template_system_note
from groupwise.data.source import load_rows
from groupwise.models.load import load_configured_tokenizer
from groupwise.rewards.answer_check import answer_format_warning
from groupwise.rewards.columns import check_reward_columns, golds_of
from groupwise.rewards.compute import RewardFunction, configured_rewards, score_batch

Row = dict[str, Any]
REFERENCE_COLUMNS = ("canonical_solution", "code")  # HumanEval's body (judged after its prompt), MBPP's function
REFERENCE_ROWS = 20


@dataclass
class ShownRow:
    """One row as a run uses it."""

    number: int
    rendered: str  # the prompt text the model continues
    answer: Any
    golds: dict[str, Any]  # reward name -> the gold as it reads it
    tests: list[str] | None


@dataclass
class DataCheck:
    rows: int
    heldout_rows: int | None
    rewards: list[str]
    shown: list[ShownRow]
    reference: dict[str, Any] | None  # {"column", "rows", "scores": {reward: mean}}
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def zero_scores(self) -> list[str]:
        """The rewards under which the reference solutions scored 0.00: they cannot judge this data."""
        return [] if self.reference is None else [n for n, s in self.reference["scores"].items() if s == 0.0]

    @property
    def failed(self) -> bool:
        """A reference solution scored 0.00 under some reward (the command exits 1)."""
        return bool(self.zero_scores())


def check_data(cfg: Config, show: int = 3) -> DataCheck:
    """Load and check the data as `groupwise train` would, render the first `show` rows, score the references."""
    check_local_paths(cfg)
    rewards = configured_rewards(cfg)
    rows = load_rows(cfg.data, "train")
    check_reward_columns(rewards, rows, "training data")
    heldout = load_rows(cfg.data, "heldout") if cfg.data.heldout_path else None
    if heldout is not None:
        check_reward_columns(rewards, heldout, "held-out data")
    tokenizer = load_configured_tokenizer(cfg)
    texts = render_prompts(rows[:show], tokenizer, cfg.data)
    shown = [ShownRow(i + 1, text, row.get("answer"), golds_of(rewards, row), row.get("tests"))
             for i, (row, text) in enumerate(zip(rows, texts, strict=False))]
    result = DataCheck(len(rows), len(heldout) if heldout is not None else None, [f.name for f in rewards], shown,
                       score_references(rewards, rows, tokenizer, cfg))
    if warning := answer_format_warning(rows, cfg):
        result.warnings.append(warning)
    result.warnings += [f"reference solutions (column '{result.reference['column']}') score 0.00 with "
                        f"{name}: the reward, the tests or data.columns do not fit the data"
                        for name in result.zero_scores()]
    if note := template_system_note(rows, tokenizer, cfg.data):
        result.notes.append(note)
    return result


def reference_column(rows: list[Row]) -> str | None:
    return next((column for column in REFERENCE_COLUMNS if any(isinstance(r.get(column), str) for r in rows)), None)


def score_references(rewards: list[RewardFunction], rows: list[Row], tokenizer: Any, cfg: Config
                     ) -> dict[str, Any] | None:
    """The first REFERENCE_ROWS reference solutions scored as completions: the mean of each reward."""
    column = reference_column(rows)
    if column is None:
        return None
    sample = [row for row in rows if isinstance(row.get(column), str)][:REFERENCE_ROWS]
    columns = {key: [row.get(key) for row in sample] for key in {k for row in sample for k in row} - {"prompt"}}
    scores = score_batch(rewards, render_prompts(sample, tokenizer, cfg.data), [row[column] for row in sample],
                         None, columns, workers=cfg.rewards.workers, timeout_s=cfg.rewards.timeout_s,
                         on_error="zero", raw_prompts=[row["prompt"] for row in sample])
    means = {}
    for j, name in enumerate(scores.names):
        values = [v for v in scores.per_function[:, j].tolist() if not math.isnan(v)]
        means[name] = sum(values) / len(values) if values else math.nan
    return {"column": column, "rows": len(sample), "scores": means}


def format_check(check: DataCheck, source: str) -> list[str]:
    """The report `groupwise data check` prints: one block per shown row, then the reference scores."""
    heldout = f", {check.heldout_rows} held-out rows" if check.heldout_rows is not None else ""
    lines = [f"data: {check.rows} training rows{heldout} from {source}; rewards: {', '.join(check.rewards)}"]
    for row in check.shown:
        lines += [f"row {row.number}, the prompt as the model sees it:"]
        lines += [f"    {line}".rstrip() for line in row.rendered.splitlines()]
        if row.answer is not None:
            lines.append(f"  answer: {row.answer!r}")
        lines += [f"  gold as {name} reads it: {gold!r}" for name, gold in row.golds.items()]
        if row.tests is not None:
            lines.append(f"  tests ({len(row.tests)}):")
            for test in row.tests:
                first, *rest = test.strip("\n").splitlines() or [""]
                lines += [f"    - {first}".rstrip()] + [f"      {line}".rstrip() for line in rest]
    if check.reference is not None:
        scores = ", ".join(f"{name} {value:.2f}" for name, value in check.reference["scores"].items())
        lines.append(f"reference solutions (column '{check.reference['column']}', first {check.reference['rows']} "
                     f"rows) score: {scores}")
    return lines
