"""`groupwise eval`: greedy accuracy, unbiased pass@k and mean reward per function; resumable; a baseline.

Per-problem results are appended to OUT/results.jsonl as each chunk is scored; a rerun with the same OUT
skips the problems already there. OUT/summary.json holds the aggregate; a baseline goes to OUT/baseline/.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from rich.table import Table

from groupwise.algorithms import pass_at_k, pass_at_k_many, success_threshold
from groupwise.config.schema import Config
from groupwise.errors import GroupwiseError
from groupwise.evaluate.problem_samples import (
    chunks,
    episode_sampler,
    greedy_results,
    problems_per_chunk,
    prompt_key,
    sample_problems,
)
from groupwise.rewards.columns import golds_of
from groupwise.rewards.compute import RewardFunction
from groupwise.runtime.distributed import all_gather_objects, is_main, on_every_rank, run_on_main, shard, world_size

Row = dict[str, Any]
RESULTS, META = "results.jsonl", "meta.json"
DEFAULT_KS = "1,8,64"


def parse_ks(text: str) -> list[int]:
    """'1,8,64' -> [1, 8, 64] (sorted, unique, each >= 1)."""
    try:
        ks = sorted({int(part) for part in text.split(",") if part.strip()})
    except ValueError as err:
        raise GroupwiseError(f"--k '{text}' is not a comma-separated list of integers",
                             "write e.g. --k 1,8,64") from err
    if not ks or ks[0] < 1:
        raise GroupwiseError(f"--k '{text}' needs integers >= 1", "write e.g. --k 1,8,64")
    return ks


def usable_ks(ks: list[int], samples: int) -> list[int]:
    """pass@k is defined (unbiased) only for k <= n samples."""
    return [k for k in ks if k <= samples]


def unique_rows(rows: list[Row]) -> list[Row]:
    """Rows with distinct prompts, first occurrence kept: a duplicate problem is evaluated once."""
    seen: set[str] = set()
    out = []
    for row in rows:
        key = prompt_key(row)
        if key not in seen:
            seen.add(key)
            out.append(row)
    return out


def problem_record(row: Row, greedy: dict[str, Any], sampled: dict[str, Any] | None, ks: list[int],
                   golds: dict[str, Any] | None = None) -> dict[str, Any]:
    """One line of results.jsonl: the problem, its gold answer (and `golds`: the gold as each reward read it) or
    tests, the greedy completion and outcome, and the sampled completions with their rewards and pass rates."""
    record: dict[str, Any] = {"key": prompt_key(row), "problem": row.get("prompt"), "answer": row.get("answer"),
                              **({"gold": golds} if golds else {}),
                              **({"tests": row["tests"]} if "tests" in row else {}),
                              "greedy_correct": greedy["correct"], "greedy_reward": greedy.get("reward"),
                              "greedy_completion": greedy.get("completion")}
    if sampled is not None:
        n, c = sampled["n"], sampled["correct"]
        record |= {"n": n, "correct": c, "pass_rate": c / n,
                   "pass@k": {str(k): pass_at_k(n, c, k) for k in usable_ks(ks, n)},
                   "mean_reward": sampled["mean_reward"], "rewards": sampled["rewards"],
                   "completions": sampled.get("completions"), "sample_rewards": sampled.get("sample_rewards")}
    return record


def read_results(path: Path) -> dict[str, dict[str, Any]]:
    """Records by key; a torn last line (interrupted write) is ignored and redone."""
    records: dict[str, dict[str, Any]] = {}
    if not path.is_file():
        return records
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and "key" in record:
            records[record["key"]] = record
    return records


def append_results(path: Path, records: list[dict[str, Any]]) -> None:
    with path.open("a") as f:
        for record in records:
            f.write(json.dumps(record) + "\n")


def results_meta(model: str, samples: int, cfg: Config) -> dict[str, Any]:
    """What an OUT folder's results depend on besides the problems: the model, the sample count and threshold,
    and the sampling settings (meta.json)."""
    r = cfg.rollout
    return {"model": model, "samples": samples, "threshold": success_threshold(cfg.algorithm.success_threshold),
            "max_new_tokens": r.max_new_tokens, "temperature": r.temperature}


def check_meta(out_dir: Path, meta: dict[str, Any]) -> None:
    """Refuse to mix results of another model, sample count or threshold into an existing OUT folder."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / META
    if path.is_file():
        old = json.loads(path.read_text())
        changed = [k for k in meta if k in old and old[k] != meta[k]]
        if changed:
            raise GroupwiseError(f"'{out_dir}' holds results with other {', '.join(changed)} "
                                 f"({', '.join(f'{k}={old[k]}' for k in changed)})",
                                 "use another --out folder, or the same settings to resume")
    path.write_text(json.dumps(meta, indent=2))


def evaluate_passk(model, tokenizer, rows: list[Row], texts: list[str], rewards: list[RewardFunction],
                   cfg: Config, *, samples: int, ks: list[int], out_dir: Path | None = None,
                   progress=None) -> dict[str, Any]:
    """Score each problem (greedy + `samples` samples) chunk by chunk, appending to out_dir; summarize.

    Under torchrun each round of W chunks is split by whole problems (`shard`), every rank scores its own, and
    the records are gathered in problem order (rank 0 appends them): the results equal one process's."""
    path = out_dir / RESULTS if out_dir else None
    done = run_on_main(lambda: read_results(path)) if path else {}  # rank 0's view of OUT, on every rank
    keys = [prompt_key(row) for row in rows]
    pending = [i for i, key in enumerate(keys) if key not in done]
    model = episode_sampler(model, cfg) if pending else model
    if progress is not None and len(rows) > len(pending):
        progress(len(rows) - len(pending))
    for chunk in chunks(pending, problems_per_chunk(cfg, samples) * world_size()):
        mine = shard(len(chunk))
        records = on_every_rank(score_problems, model, tokenizer, [rows[i] for i in chunk[mine.start:mine.stop]],
                                [texts[i] for i in chunk[mine.start:mine.stop]], rewards, cfg, samples, ks)
        records = [record for part in all_gather_objects(records) for record in part]
        if path and is_main():
            append_results(path, records)
        done |= {rec["key"]: rec for rec in records}
        if progress is not None:
            progress(len(chunk))
    return summarize([done[key] for key in keys], ks, samples)


def score_problems(model, tokenizer, rows: list[Row], texts: list[str], rewards: list[RewardFunction],
                   cfg: Config, samples: int, ks: list[int]) -> list[dict[str, Any]]:
    """One results.jsonl record per problem: its greedy completion and `samples` sampled ones, scored."""
    if not rows:  # a last round too small to reach this rank
        return []
    greedy = greedy_results(model, tokenizer, rows, texts, rewards, cfg)
    sampled = (sample_problems(model, tokenizer, rows, texts, rewards, cfg, samples=samples)
               if samples else [None] * len(rows))
    return [problem_record(r, g, s, ks, golds_of(rewards, r)) for r, g, s in zip(rows, greedy, sampled, strict=True)]


def _mean(values: list[float | None]) -> float:
    finite = [v for v in values if v is not None and not math.isnan(v)]
    return sum(finite) / len(finite) if finite else math.nan


def summarize(records: list[dict[str, Any]], ks: list[int], samples: int) -> dict[str, Any]:
    """Greedy accuracy, mean pass@k for each usable k, mean pass rate and reward (total, per function)."""
    summary: dict[str, Any] = {"problems": len(records), "samples": samples,
                               "greedy_accuracy": _mean([float(r["greedy_correct"]) for r in records])}
    sampled = [r for r in records if "n" in r]
    if not samples or not sampled:
        return summary
    ns, cs = [r["n"] for r in sampled], [r["correct"] for r in sampled]
    for k in usable_ks(ks, min(ns)):
        summary[f"pass@{k}"] = pass_at_k_many(ns, cs, k)
    summary["mean_pass_rate"] = _mean([r["pass_rate"] for r in sampled])
    summary["learnable_share"] = _mean([float(0 < r["pass_rate"] < 1) for r in sampled])
    summary["sampled_mean_reward"] = _mean([r["mean_reward"] for r in sampled])
    names = sorted({name for r in sampled for name in r["rewards"]})
    summary["sampled_reward_per_function"] = {n: _mean([r["rewards"].get(n) for r in sampled]) for n in names}
    return summary


def metric_rows(summary: dict[str, Any]) -> list[tuple[str, float]]:
    """The scalar metrics of a summary, flattened in display order."""
    rows = [(k, summary[k]) for k in ("greedy_accuracy",) if k in summary]
    passk = [(k, v) for k, v in summary.items() if k.startswith("pass@")]
    rows += sorted(passk, key=lambda kv: int(kv[0][5:]))
    rows += [(k, summary[k]) for k in ("mean_pass_rate", "learnable_share", "sampled_mean_reward")
             if k in summary]
    rows += [(f"reward/{k}", v) for k, v in summary.get("sampled_reward_per_function", {}).items()]
    return rows


def _fmt(value: float | None) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.3f}"


MIN_PROBLEMS = 20  # below this, one problem moves accuracy by more than 5 points


def few_problems_warning(problems: int, minimum: int = MIN_PROBLEMS,
                         more: str = "data.heldout_path, a larger data.heldout_fraction or data.heldout_size"
                         ) -> str | None:
    """A caveat when fewer than `minimum` problems back an accuracy or a gain to tell it from noise (`more`: the
    settings that give more)."""
    if problems >= minimum:
        return None
    return (f"warning: only {problems} held-out problem{'s' * (problems != 1)}: one problem moves accuracy by "
            f"{100 / max(problems, 1):.0f} points, so a gain here is noise; evaluate at least {minimum} ({more})")


def evaluation_title(summary: dict[str, Any]) -> str:
    """'held-out evaluation', unless some problems were in the training data."""
    seen = summary.get("in_training_data") or 0
    if not seen:
        return "held-out evaluation"
    return f"evaluation, NOT held-out: {seen} of {summary['problems']} problems are in the training data"


def results_table(name: str, summary: dict[str, Any], baseline_name: str | None = None,
                  baseline: dict[str, Any] | None = None) -> Table:
    """One column per model, one row per metric; with a baseline also the difference."""
    table = Table(title=f"{evaluation_title(summary)} ({summary['problems']} problems, {summary['samples']} "
                        f"samples each; correct: reward >= {summary.get('threshold', 1.0)})")
    table.add_column("metric")
    table.add_column(name, justify="right")
    other = dict(metric_rows(baseline)) if baseline is not None else None
    if other is not None:
        table.add_column(f"baseline: {baseline_name}", justify="right")
        table.add_column("delta", justify="right")
    for key, value in metric_rows(summary):
        cells = [key, _fmt(value)]
        if other is not None:
            base = other.get(key)
            delta = None if base is None or value is None else value - base
            cells += [_fmt(base), "-" if delta is None else f"{delta:+.3f}"]
        table.add_row(*cells)
    return table
