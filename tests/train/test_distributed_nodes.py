"""Two torchrun "nodes" on this machine (c10d rendezvous on 127.0.0.1) train the same model as one process."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from test_distributed import BASE, samples, weights

from groupwise.config.load import build_config
from groupwise.train.loop import training_loop
from groupwise.train.metrics import read_metrics

pytestmark = pytest.mark.usefixtures("one_thread")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_node(node_rank: int, endpoint: str, job: str, overrides: list[str], run_dir: Path, log: Path
               ) -> subprocess.Popen:
    command = [sys.executable, "-m", "torch.distributed.run", "--nnodes=2", "--nproc-per-node=1",
               f"--node-rank={node_rank}", "--rdzv-backend=c10d", f"--rdzv-endpoint={endpoint}",
               f"--rdzv-id={job}", "-m", "groupwise.cli.main", "train", "--run-dir", str(run_dir)]
    command += [arg for item in overrides for arg in ("--set", item)]
    env = os.environ | {"OMP_NUM_THREADS": "1", "GROUPWISE_COLLECTIVE_TIMEOUT_S": "120"}
    with log.open("w") as out:
        return subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)


def test_two_nodes_on_localhost_train_the_same_model_as_one_process(tmp_path, monkeypatch):
    overrides = [*BASE, "algorithm.scale=batch"]
    monkeypatch.setenv("GROUPWISE_TEST_RECORD", str(tmp_path / "one.txt"))
    training_loop(build_config(None, overrides), tmp_path / "one")
    monkeypatch.setenv("GROUPWISE_TEST_RECORD", str(tmp_path / "two.txt"))
    endpoint, job = f"127.0.0.1:{free_port()}", uuid.uuid4().hex
    logs = [tmp_path / f"node{n}.txt" for n in (0, 1)]
    nodes = [start_node(n, endpoint, job, overrides, tmp_path / "two", logs[n]) for n in (0, 1)]
    try:
        codes = [node.wait(timeout=300) for node in nodes]
    finally:
        for node in nodes:
            if node.poll() is None:
                os.killpg(node.pid, signal.SIGKILL)
                node.wait()
    assert codes == [0, 0], "\n".join(log.read_text()[-2000:] for log in logs)

    assert samples(tmp_path / "two") == samples(tmp_path / "one")  # the same completions and rewards
    one, two = weights(tmp_path / "one"), weights(tmp_path / "two")
    assert one.keys() == two.keys() and max(float((one[k] - two[k]).abs().max()) for k in one) <= 1e-5
    metrics = read_metrics(tmp_path / "two")
    assert [m["step"] for m in metrics] == [1, 2, 3] and {m["world_size"] for m in metrics} == {2}
    ranks = {line.split("\t")[0] for line in (tmp_path / "two.txt").read_text().splitlines()}
    assert ranks == {"0", "1"}  # each node scored groups
