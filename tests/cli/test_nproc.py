"""`groupwise train --nproc 2` as a user runs it (issue 28): Ctrl-C to the parent stops every worker after one
step with one checkpoint and exit 130; a failure on one rank is one error line and exit 2, with no torchrun
report; a note is printed once per run, not once per rank."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from groupwise.train.checkpoint import list_checkpoints
from groupwise.train.metrics import read_metrics

CLI = [sys.executable, "-m", "groupwise.cli.main", "train", "--nproc", "2"]
HELPERS = Path(__file__).resolve().parents[1] / "train" / "reward_helpers.py"
TINY = ["model.name=tiny-random", "rollout.prompts_per_step=2", "rollout.group_size=4", "rollout.max_new_tokens=4",
        "eval.before_after=false", "log.progress=false", "data.train_size=16", "train.threads=1",
        "model.dtype=float32", "train.bf16=false", "rollout.dtype=float32"]
ENV = os.environ | {"OMP_NUM_THREADS": "1"}


def sets(*items: str) -> list[str]:
    return [arg for item in items for arg in ("--set", item)]


def test_ctrl_c_to_the_parent_stops_every_worker_after_one_step_with_one_checkpoint(tmp_path):
    run, log = tmp_path / "run", tmp_path / "log.txt"
    args = ["--run-dir", str(run), *sets(*TINY, "train.steps=300", "train.micro_batch_size=16")]
    with log.open("w") as out:
        parent = subprocess.Popen(CLI + args, stdout=out, stderr=subprocess.STDOUT, env=ENV)
    try:
        deadline = time.monotonic() + 240
        while not (run / "metrics.jsonl").exists() or len(read_metrics(run)) < 2:
            assert parent.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.05)
        parent.send_signal(signal.SIGINT)  # to the parent alone, as `kill -INT` does (a terminal's Ctrl-C too)
        assert parent.wait(timeout=120) == 130, log.read_text()[-3000:]
    finally:
        parent.kill()
    steps = [m["step"] for m in read_metrics(run)]
    assert steps == list(range(1, len(steps) + 1)) and len(steps) < 300  # stopped, not run to the end
    assert [step for step, _ in list_checkpoints(run)] == [steps[-1]]  # one checkpoint, at the last step
    text = log.read_text()
    assert text.splitlines()[-1] == f"interrupted at step {steps[-1]}; resume with: groupwise train --resume {run}"
    assert text.count("interrupted at step") == 1  # rank 0's line alone
    note = "note: train.micro_batch_size 16 -> 8: the largest that divides the 8 completions per step"
    assert text.count("note: train.micro_batch_size") == 1 and note in text.splitlines()  # once, on one line
    for noise in ("Traceback", "SignalException", "ChildFailedError", "torch.distributed"):
        assert noise not in text, text[-3000:]


def test_a_reward_that_fails_on_one_rank_is_one_line_and_exit_2_with_no_run_left(tmp_path):
    run = tmp_path / "run"
    reward = f"rewards.functions=[{{name: '{HELPERS}:fails_on_rank_one'}}]"
    done = subprocess.run(CLI + ["--run-dir", str(run), *sets(*TINY, "train.steps=2", reward)], capture_output=True,
                          text=True, timeout=300, env=ENV)
    assert done.returncode == 2, done.stderr[-3000:]
    assert done.stderr == ("error: rank 1: reward function 'fails_on_rank_one' failed on sample 0: ValueError: "
                           "cannot parse this row -- fix the function, or set rewards.on_error: zero to score "
                           "failures as 0\n")
    assert not run.exists()
