"""Checkpoints across world sizes (saved on two processes, resumed on one) and SIGTERM to a distributed run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_distributed import BASE, torchrun, weights

from groupwise.config.load import build_config
from groupwise.train.checkpoint import list_checkpoints, resume_config
from groupwise.train.loop import training_loop
from groupwise.train.metrics import read_metrics

pytestmark = pytest.mark.usefixtures("one_thread")


def max_difference(a: Path, b: Path) -> float:
    one, two = weights(a), weights(b)
    assert one.keys() == two.keys()
    return max(float((one[k] - two[k]).abs().max()) for k in one)


def test_a_run_saved_on_two_processes_resumes_on_one_and_ends_equal(tmp_path, monkeypatch):
    monkeypatch.setenv("GROUPWISE_TEST_RECORD", str(tmp_path / "record.txt"))
    training_loop(build_config(None, BASE), tmp_path / "whole")  # 3 steps on one process
    first = torchrun(2, [*BASE, "train.steps=2"], tmp_path / "split", tmp_path / "record2.txt")
    assert first.returncode == 0, first.stderr[-3000:]
    training_loop(resume_config(tmp_path / "split", ["train.steps=3"]), tmp_path / "split", resume=True)
    assert max_difference(tmp_path / "whole", tmp_path / "split") <= 1e-5
    assert [m["world_size"] for m in read_metrics(tmp_path / "split")] == [2, 2, 1]


def test_sigterm_to_the_launcher_stops_every_rank_after_one_step_with_one_checkpoint(tmp_path):
    run, log = tmp_path / "run", tmp_path / "log.txt"
    overrides = [*BASE, "train.steps=60"]
    command = [sys.executable, "-m", "groupwise.cli.main", "train", "--nproc", "2", "--run-dir", str(run)]
    command += [arg for item in overrides for arg in ("--set", item)]
    with log.open("w") as out:
        launcher = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT,
                                    env=os.environ | {"OMP_NUM_THREADS": "1"})
    deadline = time.monotonic() + 240
    while len(read_metrics(run)) < 2:
        assert launcher.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
        time.sleep(0.05)
    launcher.send_signal(signal.SIGTERM)
    assert launcher.wait(timeout=240) == 143, log.read_text()[-3000:]
    steps = [m["step"] for m in read_metrics(run)]
    assert steps == list(range(1, len(steps) + 1)) and len(steps) < 60
    assert [step for step, _ in list_checkpoints(run)] == [steps[-1]]  # one checkpoint, at the last step
    assert log.read_text().count("interrupted at step") == 1  # rank 0's line; both ranks stopped at that step
