"""Synchronous (rollout.max_staleness 0) against asynchronous (1) steps, alternated in one run: s/step and who waits.

Usage: .venv/bin/python benchmarks/async_rollouts.py [--steps 4] [--workloads default,code] [--repeats 1] [--out F]
       [--set section.key=value ...]
Workloads: `default`, the embedded default job; `code`, data.task=python-functions with 128-token completions
(sandboxed test rewards). Each run is a child process of its own, float32. Synchronous runs use every core for
one thread of work at a time (train.threads = cores); asynchronous ones split them, rollout.threads for the
producer and train.threads for the trainer (half each). Reported: the median step time over steps 2..n (the
trainer's wall time per step, its waits for batches included), the producer's and trainer's idle seconds, and
async / sync from runs of the same workload in the same invocation.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

from _common import (
    child_env,
    emit,
    failed,
    groupwise_columns,
    machine_info,
    median_steady,
    ratio,
    report,
    results_table,
    rounded,
    run_child,
    write_json,
)

WORKLOADS = {"default": [], "code": ["data.task=python-functions", "rollout.max_new_tokens=128"]}
FLOAT32 = ["model.dtype=float32", "rollout.dtype=float32", "train.bf16=false"]


def mode_overrides(staleness: int, cores: int) -> list[str]:
    """Synchronous: all cores to the one thread of work; asynchronous: half to the producer, half to the trainer."""
    if not staleness:
        return ["rollout.max_staleness=0", f"train.threads={cores}"]
    producer = max(1, cores // 2)
    return [f"rollout.max_staleness={staleness}", f"rollout.threads={producer}",
            f"train.threads={max(1, cores - producer)}"]


def run_one(workload: str, staleness: int, steps: int, cores: int, extra: list[str]) -> None:
    """The child: `workload` for `steps` steps; reports metrics.jsonl's timings."""
    from groupwise.config.load import build_config
    from groupwise.train.loop import training_loop

    overrides = [*WORKLOADS[workload], *mode_overrides(staleness, cores), f"train.steps={steps}",
                 "eval.before_after=false", "log.progress=false", *FLOAT32, *extra]
    with tempfile.TemporaryDirectory(prefix="bench-async-") as tmp:
        training_loop(build_config(None, overrides), Path(tmp) / "run")
        columns = groupwise_columns(Path(tmp) / "run", reward="reward/mean", producer_idle_s="async/producer_idle_s",
                                    trainer_idle_s="async/trainer_idle_s", batch_age="rollout/staleness")
    report({"workload": workload, "staleness": staleness, "overrides": overrides, **columns})


def summarize(name: str, child: Any) -> dict[str, Any]:
    if error := failed(child, name):
        return error
    r = child.record
    idle = {key: rounded(median_steady([v or 0.0 for v in r[key]])) for key in ("producer_idle_s", "trainer_idle_s")}
    return {"system": name, "workload": r["workload"], "staleness": r["staleness"],
            "median_step_s": rounded(median_steady(r["step_s"])), **{f"median_{k}": v for k, v in idle.items()},
            "median_generate_s": rounded(median_steady(r["generate_s"])),
            "median_update_s": rounded(median_steady(r["update_s"])), "step_s": r["step_s"],
            "reward": r["reward"], "peak_rss_mib": round(child.peak_rss_mib), "wall_s": round(child.wall_s, 1)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=4, help="steps per run (the first is warm-up)")
    parser.add_argument("--workloads", default="default,code", help="comma-separated: default, code")
    parser.add_argument("--repeats", type=int, default=1, help="sync/async pairs per workload, alternated")
    parser.add_argument("--cores", type=int, default=os.cpu_count() or 2, help="CPU cores to use")
    parser.add_argument("--set", action="append", default=[], help="more config overrides (e.g. a quick check "
                        "with model.name=tiny-random)")
    parser.add_argument("--out", help="also write every result to this JSON file")
    parser.add_argument("--worker", nargs=2, metavar=("WORKLOAD", "STALENESS"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return run_one(args.worker[0], int(args.worker[1]), args.steps, args.cores, args.set)
    emit({"machine": machine_info()})
    results = []
    for workload in args.workloads.split(","):
        for _ in range(args.repeats):
            for staleness in (0, 1):  # alternated, so a drift of the machine's speed hits both alike
                name = f"{workload} k={staleness}"
                child = run_child([sys.executable, __file__, "--worker", workload, str(staleness), "--steps",
                                   str(args.steps), "--cores", str(args.cores),
                                   *[a for item in args.set for a in ("--set", item)]], env=child_env(args.cores))
                results.append(summarize(name, child))
                emit(results[-1])
    for result in results:
        peers = [r["median_step_s"] for r in results if r.get("workload") == result.get("workload")
                 and r.get("staleness") == 0 and "error" not in r]
        result["step_s_over_sync"] = ratio(result.get("median_step_s"), statistics.median(peers) if peers else None)
    headers = ["run", "s/step (median, steps 2..n)", "vs sync", "producer idle s", "trainer idle s", "generate s",
               "update s", "peak RSS MiB"]
    print(results_table(headers, results, lambda r: [r["median_step_s"], r["step_s_over_sync"],
                                                     r["median_producer_idle_s"], r["median_trainer_idle_s"],
                                                     r["median_generate_s"], r["median_update_s"],
                                                     r["peak_rss_mib"]]))
    if args.out:
        write_json(args.out, {"machine": machine_info(), "results": results})


if __name__ == "__main__":
    main()
