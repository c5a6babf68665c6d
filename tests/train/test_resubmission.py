"""`train --resume-if-exists`: the same command submitted twice, as a SLURM job that hit its time limit is
resubmitted: the first starts the run, the second continues it from the newest intact checkpoint (issue 28)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from typer.testing import CliRunner

from groupwise.cli.main import app
from groupwise.train.checkpoint import list_checkpoints
from groupwise.train.metrics import read_metrics

TINY = ["model.name=tiny-random", "rollout.prompts_per_step=2", "rollout.group_size=4", "rollout.max_new_tokens=4",
        "train.micro_batch_size=8", "eval.before_after=false", "log.progress=false", "data.train_size=16",
        "train.threads=1", "model.dtype=float32", "train.bf16=false", "rollout.dtype=float32", "train.steps=10"]


def sets(*items: str) -> list[str]:
    return [arg for item in items for arg in ("--set", item)]


def test_the_same_command_submitted_twice_continues_the_run(tmp_path):
    run, log = tmp_path / "run", tmp_path / "first.txt"
    command = [sys.executable, "-m", "groupwise.cli.main", "train", "--resume-if-exists", "--run-dir", str(run),
               *sets(*TINY)]
    env = os.environ | {"OMP_NUM_THREADS": "1"}
    with log.open("w") as out:  # the first submission, stopped by the scheduler's SIGTERM
        first = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + 120
        while not (run / "metrics.jsonl").exists() or len(read_metrics(run)) < 2:
            assert first.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.05)
        first.send_signal(signal.SIGTERM)
        assert first.wait(timeout=60) == 143, log.read_text()[-3000:]
    finally:
        first.kill()
    stopped = len(read_metrics(run))
    assert 2 <= stopped < 10 and [s for s, _ in list_checkpoints(run)] == [stopped]

    second = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)  # resubmitted as is
    assert second.returncode == 0, second.stderr[-3000:]
    assert f"resuming from checkpoint checkpoint-{stopped:06d} at step {stopped}\n" in second.stderr
    assert [m["step"] for m in read_metrics(run)] == list(range(1, 11))  # each step once
    assert (run / "final").is_dir() and (run / "summary.json").is_file()

    other = CliRunner().invoke(app, ["train", "--resume-if-exists", "--run-dir", str(run),
                                     *sets(*TINY, "train.learning_rate=0.001")])  # another job, same folder
    assert other.exit_code == 2
    assert other.stderr == (f"error: run folder '{run}' holds a run with another train.learning_rate (0.0001 there, "
                            "0.001 now) -- give another --run-dir, or the config and --set that started that run\n")
