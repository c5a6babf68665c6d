"""A second Ctrl-C stops at once and names the last checkpoint and the resume command (issue 12)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from groupwise.train.checkpoint import SLOW_ENV, list_checkpoints, stopped_now_message

CLI = [sys.executable, "-m", "groupwise.cli.main", "train"]
TINY = ["model.name=tiny-random", "rollout.prompts_per_step=2", "rollout.group_size=4",
        "rollout.max_new_tokens=6", "eval.before_after=false", "log.progress=false", "data.train_size=32",
        "data.heldout_size=8", "train.threads=1", "train.steps=500", "train.save_every=1",
        "rewards.functions=[{name: format_regex, params: {pattern: '[0-9]'}}]"]


def test_the_message_names_the_newest_checkpoint(tmp_path):
    assert stopped_now_message(tmp_path) == ("stopped at once (second signal); no checkpoint saved yet; "
                                             f"resume with: groupwise train --resume {tmp_path}")
    (tmp_path / "checkpoint-000002").mkdir()
    (tmp_path / "checkpoint-000010").mkdir()
    assert stopped_now_message(tmp_path) == (
        f"stopped at once (second signal); last checkpoint: {tmp_path / 'checkpoint-000010'} (step 10); "
        f"resume with: groupwise train --resume {tmp_path}")


def test_second_ctrl_c_exits_at_once_naming_the_checkpoint(tmp_path):
    run, log = tmp_path / "run", tmp_path / "log.txt"
    args = [a for item in TINY for a in ("--set", item)]
    with log.open("w") as out:
        proc = subprocess.Popen(CLI + ["--run-dir", str(run)] + args, stdout=out, stderr=subprocess.STDOUT,
                                env=os.environ | {SLOW_ENV: "0.3"})  # the first signal's save takes seconds
    try:
        deadline = time.monotonic() + 120
        while not list_checkpoints(run) and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        assert list_checkpoints(run), log.read_text()
        proc.send_signal(signal.SIGINT)
        time.sleep(0.5)  # two signals at once reach Python's handler as one
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 130, log.read_text()
    finally:
        proc.kill()
    last = log.read_text().strip().splitlines()[-1]
    assert last.startswith("stopped at once (second signal); last checkpoint: ") and f"{run}/checkpoint-" in last
    assert last.endswith(f"resume with: groupwise train --resume {run}")
    assert "Traceback" not in log.read_text()
