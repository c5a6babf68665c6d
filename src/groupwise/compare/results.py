"""results.json of `groupwise compare`: every metric of every variant with a bootstrap interval over seeds and
problems, and each variant minus the baseline, paired on the same seeds and problems."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from groupwise.algorithms.passk import pass_at_k
from groupwise.compare.bootstrap import mean_with_interval
from groupwise.errors import GroupwiseError

CellResult = dict[str, Any]
PER_RUN = ("train_minutes", "rollout_tokens")  # one number per seed, not per problem


def metric_names(ks: list[int], samples: int) -> list[str]:
    """greedy_accuracy, pass@k for each usable k, mean_reward (with samples), then the per-run costs."""
    sampled = [f"pass@{k}" for k in ks if k <= samples] + (["mean_reward"] if samples else [])
    return ["greedy_accuracy", *sampled, *PER_RUN]


def per_problem(cell: CellResult, metric: str) -> list[float]:
    """One cell's values of `metric`: [P] per problem, or [1] for a per-run cost."""
    if metric == "greedy_accuracy":
        return [float(v) for v in cell["greedy_correct"]]
    if metric.startswith("pass@"):
        k = int(metric[5:])
        return [pass_at_k(n, c, k) if n >= k else math.nan for n, c in zip(cell["n"], cell["correct"], strict=True)]
    if metric == "mean_reward":
        return [math.nan if v is None else float(v) for v in cell["mean_reward"]]
    return [float(cell[metric])]


def value_matrix(cells: list[CellResult], metric: str) -> np.ndarray:
    """[S, P] (or [S, 1]) of one variant's cells, seeds in the given order."""
    return np.array([per_problem(cell, metric) for cell in cells], dtype=float)


def check_same_problems(cells: list[CellResult]) -> list[str]:
    """Every cell must hold the same held-out problems in the same order, or no pairing is possible."""
    keys = cells[0]["problems"]
    for cell in cells[1:]:
        if cell["problems"] != keys:
            where = f"{cell['variant']}" + (f"/seed-{cell['seed']}" if cell.get("seed") is not None else "")
            raise GroupwiseError(f"cell {where} was evaluated on other held-out problems than the others",
                                 "delete its cell.json and eval/ folder and rerun to evaluate it again")
    return keys


def build_results(base: CellResult, cells: dict[str, list[CellResult]], *, baseline: str, ks: list[int],
                  samples: int, replicates: int, seeds: list[int]) -> dict[str, Any]:
    """The results.json mapping; `cells`: variant -> its cells in `seeds` order."""
    problems = check_same_problems([base, *[c for group in cells.values() for c in group]])
    names = metric_names(ks, samples)
    out: dict[str, Any] = {
        "problems": len(problems), "seeds": seeds, "baseline": baseline, "samples": samples,
        "bootstrap": {"replicates": replicates, "resamples": "seeds and problems, each with replacement",
                      "interval": "95% percentile"},
        "base": {m: _json(mean_with_interval(value_matrix([base], m), replicates)) for m in names
                 if m not in PER_RUN},
        "variants": {}, "differences": {}}
    for name, group in cells.items():
        out["variants"][name] = {m: _json(mean_with_interval(value_matrix(group, m), replicates)) for m in names}
    reference = cells[baseline]
    for name, group in cells.items():
        if name == baseline:
            continue
        out["differences"][name] = {}
        for m in names:
            paired = value_matrix(group, m) - value_matrix(reference, m)  # same seeds (rows), same problems
            summary = mean_with_interval(paired, replicates)
            out["differences"][name][m] = _json({"mean": summary["mean"], "ci95": summary["ci95"]})
    return out


def _json(value: Any) -> Any:
    """NaN becomes null: results.json stays valid JSON."""
    if isinstance(value, float):
        return None if math.isnan(value) else value
    if isinstance(value, dict):
        return {k: _json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json(v) for v in value]
    return value
