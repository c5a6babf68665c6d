"""Checkpoints across world sizes: a run saved on two processes resumes on one and ends as if uninterrupted."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_distributed import BASE, torchrun, weights

from groupwise.config.load import build_config
from groupwise.train.checkpoint import resume_config
from groupwise.train.loop import train
from groupwise.train.metrics import read_metrics

pytestmark = pytest.mark.usefixtures("one_thread")


def max_difference(a: Path, b: Path) -> float:
    one, two = weights(a), weights(b)
    assert one.keys() == two.keys()
    return max(float((one[k] - two[k]).abs().max()) for k in one)


def test_a_run_saved_on_two_processes_resumes_on_one_and_ends_equal(tmp_path, monkeypatch):
    monkeypatch.setenv("GROUPWISE_TEST_RECORD", str(tmp_path / "record.txt"))
    train(build_config(None, BASE), tmp_path / "whole")  # 3 steps on one process
    first = torchrun(2, [*BASE, "train.steps=2"], tmp_path / "split", tmp_path / "record2.txt")
    assert first.returncode == 0, first.stderr[-3000:]
    train(resume_config(tmp_path / "split", ["train.steps=3"]), tmp_path / "split", resume=True)
    assert max_difference(tmp_path / "whole", tmp_path / "split") <= 1e-5
    assert [m["world_size"] for m in read_metrics(tmp_path / "split")] == [2, 2, 1]
