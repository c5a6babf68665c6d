"""`groupwise select`: estimate each example's pass rate with the base model, then keep a difficulty slice.

Pass rates are cached in a difficulty file (JSONL, one record per prompt keyed by a hash of prompt, model
name and K), so selecting again with another strategy reads the file and generates nothing.
"""

from __future__ import annotations

import json
import math
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from groupwise.data.prompts import prompt_key
from groupwise.errors import GroupwiseError
from groupwise.evaluate.problem_samples import chunks, episode_sampler, problems_per_chunk, sample_problems

Row = dict[str, Any]
STRATEGIES = ("hardest", "easiest", "middle", "random", "learnable")


@dataclass(frozen=True)
class Strategy:
    """How to select: `name` and `amount` (a fraction in (0, 1], or a count > 1; None for learnable)."""

    name: str
    amount: float | None = None


def parse_strategy(text: str) -> Strategy:
    """'hardest:0.1' | 'easiest:0.1' | 'middle:0.1' | 'random:0.1' | 'random:50' | 'learnable'."""
    name, _, raw = text.partition(":")
    hint = "use hardest:0.1, easiest:0.1, middle:0.1, random:0.1 (a fraction or a count like 50) or learnable"
    if name not in STRATEGIES:
        raise GroupwiseError(f"--keep '{text}' names no strategy", hint)
    if name == "learnable":
        if raw:
            raise GroupwiseError(f"--keep '{text}': learnable takes no amount", hint)
        return Strategy(name)
    try:
        amount = float(raw)
    except ValueError:
        raise GroupwiseError(f"--keep '{text}' needs an amount after ':'", hint) from None
    if not amount > 0 or (amount > 1 and not amount.is_integer()) or not math.isfinite(amount):
        raise GroupwiseError(f"--keep '{text}': the amount must be a fraction in (0, 1] or a whole count",
                             hint)
    return Strategy(name, amount)


def selection_size(total: int, amount: float) -> int:
    """Rows kept: a fraction rounds half up and keeps at least one row; a count is capped at `total`."""
    if total == 0:
        return 0
    wanted = math.floor(amount * total + 0.5) if amount <= 1 else int(amount)
    return min(max(wanted, 1), total)


def _ranked(pass_rates: list[float]) -> list[int]:
    """Indices from hardest (lowest pass rate) to easiest; equal rates keep dataset order."""
    return sorted(range(len(pass_rates)), key=lambda i: (pass_rates[i], i))


def select_indices(pass_rates: list[float], strategy: Strategy, seed: int = 0) -> list[int]:
    """Indices of the kept rows, in dataset order."""
    n = len(pass_rates)
    if strategy.name == "learnable":
        return [i for i, p in enumerate(pass_rates) if 0 < p < 1]
    size = selection_size(n, strategy.amount or 0.0)
    if strategy.name == "random":
        return sorted(random.Random(seed).sample(range(n), size))
    ranked = _ranked(pass_rates)
    if strategy.name == "hardest":
        picked = ranked[:size]
    elif strategy.name == "easiest":
        picked = sorted(range(n), key=lambda i: (-pass_rates[i], i))[:size]
    else:  # middle: the slice centred on the median rank
        start = (n - size) // 2
        picked = ranked[start:start + size]
    return sorted(picked)


def learnable_share(pass_rates: list[float]) -> float:
    """Share of examples with 0 < pass rate < 1: the ones whose GRPO groups can differ."""
    return sum(0 < p < 1 for p in pass_rates) / len(pass_rates) if pass_rates else 0.0


def histogram(pass_rates: list[float], bins: int = 10) -> list[tuple[float, float, int]]:
    """(low, high, count) for `bins` equal bins over [0, 1]; a rate of 1.0 falls in the last bin."""
    counts = [0] * bins
    for p in pass_rates:
        counts[min(int(p * bins), bins - 1)] += 1
    return [(b / bins, (b + 1) / bins, c) for b, c in enumerate(counts)]


def format_histogram(hist: list[tuple[float, float, int]], width: int = 40) -> str:
    """Text bars, one line per bin."""
    top = max((c for _, _, c in hist), default=0) or 1
    lines = []
    for i, (low, high, count) in enumerate(hist):
        bracket = "]" if i == len(hist) - 1 else ")"
        lines.append(f"[{low:.2f}, {high:.2f}{bracket} {'#' * round(width * count / top):<{width}} {count}")
    return "\n".join(lines)


def difficulty_key(row: Row, model: str, samples: int) -> str:
    return prompt_key(row, model, samples)


def read_difficulty(path: Path) -> dict[str, dict[str, Any]]:
    """Cached records by key; a torn last line is ignored (and re-estimated)."""
    records: dict[str, dict[str, Any]] = {}
    if path.is_file():
        for line in path.read_text().splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict) and "key" in record and "pass_rate" in record:
                records[record["key"]] = record
    return records


def append_difficulty(path: Path, records: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as f:
        for record in records:
            f.write(json.dumps(record) + "\n")


def missing_rows(rows: list[Row], cache: dict[str, dict[str, Any]], model: str, samples: int) -> list[int]:
    """Indices of rows with no cached pass rate (each distinct prompt once)."""
    seen, out = set(cache), []
    for i, row in enumerate(rows):
        key = difficulty_key(row, model, samples)
        if key not in seen:
            seen.add(key)
            out.append(i)
    return out


def estimate_pass_rates(load_model, rows: list[Row], cfg, rewards, *, model_name: str, samples: int,
                        path: Path, progress=None) -> list[float]:
    """Pass rate of every row (K samples at temperature 1), from the difficulty file or freshly estimated.

    `load_model()` -> (model, tokenizer, texts_for(rows)) is only called when some rows are not cached.
    """
    cache = read_difficulty(path)
    todo = missing_rows(rows, cache, model_name, samples)
    if todo:
        model, tokenizer, render = load_model()
        model = episode_sampler(model, cfg)
        for chunk in chunks(todo, problems_per_chunk(cfg, samples)):
            chunk_rows = [rows[i] for i in chunk]
            scored = sample_problems(model, tokenizer, chunk_rows, render(chunk_rows), rewards, cfg,
                                     samples=samples, temperature=1.0, top_p=1.0)
            records = [{"key": difficulty_key(row, model_name, samples), "model": model_name,
                        "samples": samples, "prompt": row.get("prompt"), "n": s["n"], "correct": s["correct"],
                        "pass_rate": s["correct"] / s["n"]}
                       for row, s in zip(chunk_rows, scored, strict=True)]
            append_difficulty(path, records)
            cache |= {r["key"]: r for r in records}
            if progress is not None:
                progress(len(chunk))
    return [cache[difficulty_key(row, model_name, samples)]["pass_rate"] for row in rows]


def write_selection(path: Path, rows: list[Row], pass_rates: list[float], indices: list[int]) -> None:
    """The kept rows as JSONL, each with its `pass_rate` column (usable as data.path)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as f:
        for i in indices:
            f.write(json.dumps(rows[i] | {"pass_rate": pass_rates[i]}, default=str) + "\n")
