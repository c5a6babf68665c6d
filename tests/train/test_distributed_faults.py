"""Faults in a 2-process torchrun job: a worker killed with kill -9, SIGTERM to torchrun, a rank that raises."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_distributed import BASE, weights

from groupwise.config.load import build_config
from groupwise.train.checkpoint import list_checkpoints
from groupwise.train.loop import training_loop
from groupwise.train.metrics import read_metrics

pytestmark = pytest.mark.usefixtures("one_thread")

HELPERS = "tests/train/reward_helpers.py"
PLAIN = [item for item in BASE if not item.startswith("rewards.")] + [
    f"rewards.functions=[{{name: '{HELPERS}:half_learnable'}}]"]


def start_torchrun(overrides: list[str], run_dir: Path, log: Path, *extra: str) -> subprocess.Popen:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", *extra,
               "-m", "groupwise.cli.main", "train", "--run-dir", str(run_dir)]
    command += [arg for item in overrides for arg in ("--set", item)]
    env = os.environ | {"OMP_NUM_THREADS": "1", "GROUPWISE_COLLECTIVE_TIMEOUT_S": "60"}
    with log.open("w") as out:  # its own session: the test can always end torchrun and its workers
        return subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)


def finish(launcher: subprocess.Popen, log: Path, timeout: float = 240) -> int:
    try:
        return launcher.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(launcher.pid, signal.SIGKILL)
        launcher.wait()
        pytest.fail(f"torchrun did not end within {timeout:g}s: {log.read_text()[-3000:]}")


def wait_for_steps(run: Path, steps: int, launcher: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 240
    while len(read_metrics(run)) < steps:
        if launcher.poll() is not None or time.monotonic() > deadline:
            os.killpg(launcher.pid, signal.SIGKILL)
            pytest.fail(f"the run did not reach step {steps}: {log.read_text()[-3000:]}")
        time.sleep(0.05)


def worker_pid(launcher: int, rank: int) -> int:
    """The pid of torchrun's child process with RANK=`rank` (from /proc: its parent and its environment)."""
    for entry in Path("/proc").iterdir():
        try:
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            environ = (entry / "environ").read_bytes().split(b"\0")
        except (OSError, ValueError, IndexError):
            continue
        if parent == launcher and f"RANK={rank}".encode() in environ:
            return int(entry.name)
    raise AssertionError(f"no worker with RANK={rank} under pid {launcher}")


def test_a_worker_killed_with_kill_9_is_restarted_and_the_run_ends_equal(tmp_path, monkeypatch):
    overrides = [*PLAIN, "train.steps=5", "train.save_every=1"]
    training_loop(build_config(None, overrides), tmp_path / "whole")  # uninterrupted, one process
    run, log = tmp_path / "run", tmp_path / "log.txt"
    launcher = start_torchrun(overrides, run, log, "--max-restarts=1")
    wait_for_steps(run, 2, launcher, log)
    os.kill(worker_pid(launcher.pid, rank=1), signal.SIGKILL)
    assert finish(launcher, log) == 0, log.read_text()[-3000:]

    text = log.read_text()
    assert "exitcode: -9" in text and re.search(r"resuming from checkpoint checkpoint-\d+ at step [12]", text)
    assert [m["step"] for m in read_metrics(run)] == [1, 2, 3, 4, 5]  # the steps after the checkpoint, once
    one, two = weights(tmp_path / "whole"), weights(run)
    assert one.keys() == two.keys() and max(float((one[k] - two[k]).abs().max()) for k in one) <= 1e-5


def test_sigterm_to_a_bare_torchrun_stops_both_ranks_after_one_step_with_one_checkpoint(tmp_path):
    run, log = tmp_path / "run", tmp_path / "log.txt"
    launcher = start_torchrun([*PLAIN, "train.steps=60"], run, log)
    wait_for_steps(run, 2, launcher, log)
    launcher.send_signal(signal.SIGTERM)
    # torchrun hands SIGTERM to its workers and waits for them (--shutdown-timeout, default 30 s), then ends
    # with its own SignalException: exit 1, not 143 (the workers exit 143; `groupwise train --nproc` does too)
    assert finish(launcher, log) == 1, log.read_text()[-3000:]
    text = log.read_text()
    assert "SignalException" in text
    stopped = re.findall(r"interrupted at step (\d+)", text)
    steps = [m["step"] for m in read_metrics(run)]
    assert stopped == [str(steps[-1])], text[-3000:]  # rank 0's line, at the step every rank stopped after
    assert steps == list(range(1, len(steps) + 1)) and len(steps) < 60
    assert [step for step, _ in list_checkpoints(run)] == [steps[-1]]  # one checkpoint, at that step


def test_a_reward_that_fails_on_one_rank_stops_every_rank_with_one_line(tmp_path):
    run, log = tmp_path / "run", tmp_path / "log.txt"
    overrides = [*PLAIN[:-1], f"rewards.functions=[{{name: '{HELPERS}:fails_on_rank_one'}}]"]
    started = time.monotonic()
    launcher = start_torchrun(overrides, run, log)
    assert finish(launcher, log) == 1
    text = log.read_text()
    errors = [line for line in text.splitlines() if line.startswith("error: ")]
    assert len(errors) == 2 and len(set(errors)) == 1, text[-3000:]  # both ranks, the same line
    assert errors[0].startswith("error: rank 1: reward function 'fails_on_rank_one' failed on sample 0: "
                                "ValueError: cannot parse this row -- ")
    assert text.count("Traceback (most recent call last)") == 1  # torchrun's own report; no worker traceback
    assert not run.exists() or not list_checkpoints(run)
    assert time.monotonic() - started < 200  # no collective waited out its timeout


def test_a_restarted_group_meets_under_its_own_prefix_of_the_agents_store(monkeypatch):
    from datetime import timedelta

    import torch.distributed as dist

    from groupwise.errors import GroupwiseError
    from groupwise.runtime.distributed import restart_store

    agent = dist.TCPStore("127.0.0.1", 0, is_master=True, wait_for_workers=False)  # what torchrun's agent holds
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", str(agent.port))
    monkeypatch.setenv("TORCHELASTIC_USE_AGENT_STORE", "True")
    monkeypatch.setenv("GROUP_WORLD_SIZE", "1")
    monkeypatch.setenv("TORCHELASTIC_RESTART_COUNT", "0")
    assert restart_store(timedelta(seconds=10)) is None  # the first group: torchrun's own env:// store
    monkeypatch.setenv("TORCHELASTIC_RESTART_COUNT", "2")
    restarted = restart_store(timedelta(seconds=10))
    restarted.set("rank_1", "new address")
    assert agent.get("groupwise/restart-2/rank_1") == b"new address"  # the old group's keys are not seen
    monkeypatch.setenv("TORCHELASTIC_USE_AGENT_STORE", "False")  # TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1
    assert restart_store(timedelta(seconds=10)) is None
    monkeypatch.setenv("TORCHELASTIC_USE_AGENT_STORE", "True")
    monkeypatch.setenv("GROUP_WORLD_SIZE", "2")  # two agents count restarts separately: no common prefix
    with pytest.raises(GroupwiseError, match="TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1"):
        restart_store(timedelta(seconds=10))


def _work_that_fails_on_rank_one(rank: int, port: int, out: str) -> None:
    """One of two gloo processes: on_every_rank over work that raises on rank 1 (a user error, then a bug);
    writes what this rank raised each time."""
    from datetime import timedelta

    import torch.distributed as dist

    from groupwise.errors import GroupwiseError
    from groupwise.runtime.distributed import on_every_rank

    def work(bug: bool) -> str:
        if rank == 1:
            raise ValueError("bad row") if bug else GroupwiseError("bad row", "fix it")
        return "scored"

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2,
                            timeout=timedelta(seconds=60))
    outcomes = []
    for bug in (False, True):
        try:
            outcomes.append(on_every_rank(work, bug))
        except Exception as err:  # noqa: BLE001 - the outcome under test
            outcomes.append(f"{type(err).__name__}: {err}")
    Path(out, str(rank)).write_text("\n".join(outcomes))
    dist.destroy_process_group()


def test_on_every_rank_hands_one_ranks_failure_to_every_rank(tmp_path):
    import socket

    import torch.multiprocessing as mp

    from groupwise.runtime.distributed import on_every_rank

    assert on_every_rank(lambda x: x + 1, 1) == 2  # one process: just the call
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    mp.spawn(_work_that_fails_on_rank_one, args=(port, str(tmp_path)), nprocs=2, join=True)
    rank0, rank1 = ((tmp_path / str(rank)).read_text().splitlines() for rank in (0, 1))
    assert rank0[0] == rank1[0] == "GroupwiseError: rank 1: bad row -- fix it"  # a user error: one line, everywhere
    # a bug: the failing rank keeps its own exception (and traceback); the other gets one line naming it
    assert rank0[1] == "GroupwiseError: rank 1: ValueError: bad row -- its traceback is in that rank's log"
    assert rank1[1] == "ValueError: bad row"
