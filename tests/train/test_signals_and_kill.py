"""Real `groupwise train` processes: SIGINT/SIGTERM stop with a checkpoint; kill -9 never loses a run."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from safetensors.torch import load_file

from groupwise.train.checkpoint import PARTIAL_PREFIX, SLOW_ENV, is_intact, list_checkpoints
from groupwise.train.metrics import read_metrics

CLI = [sys.executable, "-m", "groupwise.cli.main", "train"]
TINY = ["model.name=tiny-random", "rollout.prompts_per_step=2", "rollout.group_size=4",
        "rollout.max_new_tokens=6", "train.micro_batch_size=8", "eval.before_after=false",
        "log.progress=false", "data.train_size=32", "data.heldout_size=8", "train.threads=1",
        "log.samples_per_step=1", "rewards.functions=[{name: format_regex, params: {pattern: '[0-9]'}}]"]


def sets(*items: str) -> list[str]:
    return [arg for item in items for arg in ("--set", item)]


def start(args: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    """A CLI process with stdout+stderr going to `log` (no pipe to fill up)."""
    with log.open("w") as out:
        return subprocess.Popen(CLI + args, stdout=out, stderr=subprocess.STDOUT, env=env)


def wait_for(condition, timeout: float = 60.0, proc: subprocess.Popen | None = None) -> bool:
    """Poll `condition` until true; False when the process ended or time ran out first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        if proc is not None and proc.poll() is not None:
            return False
        time.sleep(0.02)
    return False


def lines_of(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


def newest_intact(run: Path) -> int:
    intact = [step for step, folder in list_checkpoints(run) if is_intact(folder)]
    return max(intact, default=0)


@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_finishes_the_step_saves_and_exits(signum, code, tmp_path):
    """With a producer sampling a step ahead (rollout.max_staleness 1): it stops with the trainer, no hang."""
    run, log = tmp_path / "run", tmp_path / "log.txt"
    args = sets(*TINY, "train.steps=500", "train.save_every=0", "rollout.max_staleness=1")
    proc = start(["--run-dir", str(run)] + args, log)
    try:
        assert wait_for(lambda: lines_of(run / "metrics.jsonl") >= 2, proc=proc), log.read_text()
        sent = time.monotonic()
        proc.send_signal(signum)
        assert proc.wait(timeout=30) == code, log.read_text()
        assert time.monotonic() - sent < 25  # one step (~0.3 s idle); the 500 steps left would take minutes
    finally:
        proc.kill()
    step = len(read_metrics(run))
    assert [s for s, _ in list_checkpoints(run)] == [step] and is_intact(list_checkpoints(run)[0][1])
    last = log.read_text().strip().splitlines()[-1]
    assert last == f"interrupted at step {step}; resume with: groupwise train --resume {run}"
    assert "Traceback" not in log.read_text()


def test_kill_9_at_random_moments_never_loads_a_partial_checkpoint(tmp_path):
    steps, run, rng = 20, tmp_path / "run", random.Random(6)
    env = os.environ | {SLOW_ENV: "0.05"}  # widen the window in which a kill lands mid-checkpoint
    args = sets(*TINY, f"train.steps={steps}", "train.save_every=1", "train.keep_checkpoints=2")
    whole = tmp_path / "whole"  # the same job, never interrupted (meanwhile): same metrics and weights
    uninterrupted = start(["--run-dir", str(whole)] + args, tmp_path / "whole.txt")
    try:
        kill_and_resume_six_times(run, args, steps, env, rng, tmp_path)
        assert uninterrupted.wait(timeout=300) == 0, (tmp_path / "whole.txt").read_text()
    finally:
        uninterrupted.kill()
    done = subprocess.run(CLI + ["--resume", str(run)] + args, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert [r["step"] for r in read_metrics(run)] == list(range(1, steps + 1))
    samples = [json.loads(line)["step"] for line in (run / "samples.jsonl").read_text().splitlines()]
    assert samples == list(range(1, steps + 1))
    assert (run / "summary.json").exists() and (run / "final").is_dir()
    assert not list(run.glob(f"{PARTIAL_PREFIX}*"))
    assert all(is_intact(folder) for _, folder in list_checkpoints(run))
    assert [untimed(r) for r in read_metrics(run)] == [untimed(r) for r in read_metrics(whole)]
    a, b = (load_file(r / "final" / "adapter_model.safetensors") for r in (run, whole))
    assert max(float((a[k] - b[k]).abs().max()) for k in a) <= 1e-6


def kill_and_resume_six_times(run: Path, args: list[str], steps: int, env: dict[str, str], rng: random.Random,
                              tmp_path: Path) -> None:
    """Start (then resume) the run and kill -9 it six times: during start-up, mid-checkpoint, at random."""
    mid_write = resumed_checks = 0
    for attempt in range(6):
        log = tmp_path / f"log{attempt}.txt"
        expected = newest_intact(run)
        proc = start((["--run-dir", str(run)] if attempt == 0 else ["--resume", str(run)]) + args, log, env)
        try:
            if attempt == 3:  # during start-up, before any step of this process
                time.sleep(rng.uniform(0.5, 2.0))
            else:
                seen = lines_of(run / "metrics.jsonl") if attempt else 0
                progressed = wait_for(lambda s=seen: lines_of(run / "metrics.jsonl") > s, proc=proc)
                assert progressed, log.read_text()
                if attempt % 2:  # exactly while a checkpoint is being written
                    wait_for(lambda: any(run.glob(f"{PARTIAL_PREFIX}*")), timeout=10, proc=proc)
                else:
                    time.sleep(rng.uniform(0.0, 0.4))
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
        mid_write += any(run.glob(f"{PARTIAL_PREFIX}*"))
        text = log.read_text()
        if "resuming from" in text:
            resumed_checks += 1
            assert f"at step {expected}\n" in text, text
        assert "Traceback" not in text, text
        assert newest_intact(run) < steps, "the run finished before it was killed 6 times"
    assert mid_write >= 2 and resumed_checks >= 4


def untimed(record: dict) -> dict:
    return {k: v for k, v in record.items() if not k.endswith(("_s", "tokens_per_s")) and not k.startswith("memory/")}


def test_kill_9_after_save_every_minutes_leaves_a_resumable_checkpoint(tmp_path):
    """An asynchronous run (a producer a step ahead) killed with -9 resumes to the uninterrupted run's weights:
    the batches in flight are regenerated from the weights saved with the checkpoint."""
    # save_every=0 writes no step-based checkpoint before the end: only the 0.3 s timer can have written one
    run, log = tmp_path / "run", tmp_path / "log.txt"
    timed = sets(*TINY, "train.steps=400", "train.save_every=0", "train.save_every_minutes=0.005",
                 "rollout.max_staleness=1")
    proc = start(["--run-dir", str(run)] + timed, log)
    try:
        assert wait_for(lambda: newest_intact(run) >= 2, timeout=120, proc=proc), log.read_text()
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    saved = newest_intact(run)
    assert 2 <= saved < 400 and len(read_metrics(run)) >= saved
    whole = tmp_path / "whole"  # never interrupted, no timer: the same metrics and weights (run meanwhile)
    args = sets(*TINY, f"train.steps={saved + 2}", "train.save_every=0", "train.save_every_minutes=0",
                "rollout.max_staleness=1")
    uninterrupted = start(["--run-dir", str(whole)] + args, tmp_path / "whole.txt")
    end = sets(f"train.steps={saved + 2}")
    done = subprocess.run(CLI + ["--resume", str(run)] + end, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert f"resuming from checkpoint checkpoint-{saved:06d} at step {saved}\n" in done.stderr
    assert uninterrupted.wait(timeout=300) == 0, (tmp_path / "whole.txt").read_text()
    assert [untimed(r) for r in read_metrics(run)] == [untimed(r) for r in read_metrics(whole)]
    a, b = (load_file(r / "final" / "adapter_model.safetensors") for r in (run, whole))
    assert max(float((a[k] - b[k]).abs().max()) for k in a) <= 1e-6
