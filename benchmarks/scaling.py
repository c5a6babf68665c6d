"""The default job on 1 process x 2 threads against 2 torchrun processes x 1 thread: s/step and peak memory.

    .venv/bin/python benchmarks/scaling.py --steps 5 [--set KEY=VALUE ...]

Each layout runs `groupwise train` in its own process tree (no before/after evaluation); s/step is the median of
the logged `step_s` of steps 2..N (rank 0's, which waits for the slowest rank at every reduction); peak memory is
the largest resident set of any process of the tree (`getrusage(RUSAGE_CHILDREN)` of a fresh parent per layout),
and the largest `memory/peak_rss_mb` the ranks logged (the trainer processes alone, without torchrun's launcher).
Full fine-tuning (`--set lora.enabled=false`) runs sharded (FSDP2) on 2 processes.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

LAYOUTS = {"1 process x 2 threads": (1, 2), "2 processes x 1 thread": (2, 1)}


def run_layout(nproc: int, threads: int, steps: int, extra: list[str], folder: Path) -> dict[str, float]:
    overrides = [f"train.steps={steps}", f"train.threads={threads}", "eval.before_after=false",
                 "log.progress=false", *extra]
    sets = [arg for item in overrides for arg in ("--set", item)]
    run_dir = folder / f"run-{nproc}"
    train = ["-m", "groupwise.cli.main", "train", "--run-dir", str(run_dir), *sets]
    if nproc > 1:
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
                   *train]
    else:
        command = [sys.executable, *train]
    env = os.environ | {"OMP_NUM_THREADS": str(threads)}
    clock = time.perf_counter()
    subprocess.run(command, check=True, env=env, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - clock
    peak_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # Linux: KiB
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    step_s = [r["step_s"] for r in records[1:]] or [records[0]["step_s"]]
    logged = max((r.get("memory/peak_rss_mb", 0.0) for r in records), default=0.0)
    return {"s_per_step": statistics.median(step_s), "wall_s": wall, "peak_rss_mib": peak_mib, "rank_rss_mib": logged,
            "reward_mean": statistics.fmean(r["reward/mean"] for r in records)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--set", dest="extra", action="append", default=[])
    parser.add_argument("--layout", help=argparse.SUPPRESS)  # internal: run one layout, print JSON
    args = parser.parse_args()
    if args.layout:
        with tempfile.TemporaryDirectory() as tmp:
            print(json.dumps(run_layout(*LAYOUTS[args.layout], args.steps, args.extra, Path(tmp))))
        return
    print("| layout | s/step (median of steps 2..N) | wall s | peak RSS per process MiB | logged peak per rank MiB |")
    print("|---|---|---|---|---|")
    for name in LAYOUTS:  # each in a fresh process: getrusage(RUSAGE_CHILDREN) keeps the largest child ever seen
        extra = [arg for item in args.extra for arg in ("--set", item)]
        out = subprocess.run([sys.executable, __file__, "--layout", name, "--steps", str(args.steps), *extra],
                             check=True, capture_output=True, text=True).stdout
        row = json.loads(out.strip().splitlines()[-1])
        print(f"| {name} | {row['s_per_step']:.2f} | {row['wall_s']:.0f} | {row['peak_rss_mib']:.0f} | "
              f"{row['rank_rss_mib']:.0f} |", flush=True)


if __name__ == "__main__":
    main()
