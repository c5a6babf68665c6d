"""`groupwise eval` on 2 torchrun processes: each scores its own whole problems, the results equal one process's."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from groupwise.cli.main import app

pytestmark = pytest.mark.usefixtures("one_thread")

HELPERS = "tests/train/reward_helpers.py"
# 7 problems, 4 samples each, 2 problems per chunk: rounds of 4 problems over 2 ranks, the last one uneven (1 + 2)
ARGS = ["tiny-random", "--problems", "7", "--samples", "4", "--k", "1,2,4",
        "--set", "log.progress=false", "--set", "rollout.max_new_tokens=6", "--set", "eval.batch_size=8",
        "--set", "model.dtype=float32", "--set", "rollout.dtype=float32", "--set", "data.heldout_size=8",
        "--set", f"rewards.functions=[{{name: '{HELPERS}:record_rank'}}]"]


def scored_by(record: Path) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for line in record.read_text().splitlines():
        rank, prompt = line.split("\t", 1)
        out.setdefault(rank, set()).add(prompt)
    return out


def test_two_processes_evaluate_the_same_as_one(tmp_path, monkeypatch):
    monkeypatch.setenv("GROUPWISE_TEST_RECORD", str(tmp_path / "one.txt"))
    done = CliRunner().invoke(app, ["eval", *ARGS, "--out", str(tmp_path / "one")], terminal_width=200)
    assert done.exit_code == 0, done.output
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
               "-m", "groupwise.cli.main", "eval", *ARGS, "--out", str(tmp_path / "two")]
    env = os.environ | {"GROUPWISE_TEST_RECORD": str(tmp_path / "two.txt"), "OMP_NUM_THREADS": "1",
                        "GROUPWISE_COLLECTIVE_TIMEOUT_S": "120", "COLUMNS": "200"}
    two = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert two.returncode == 0, two.stderr[-3000:]

    one_summary, two_summary = (json.loads((tmp_path / run / "summary.json").read_text()) for run in ("one", "two"))
    assert one_summary == two_summary and one_summary["problems"] == 7
    assert {"pass@1", "pass@2", "pass@4", "greedy_accuracy"} <= set(one_summary)
    assert 0 < one_summary["pass@4"] and one_summary["sampled_mean_reward"] > 0  # the numbers are not all zero
    # every problem once, in problem order, with the same completions
    assert (tmp_path / "two" / "results.jsonl").read_text() == (tmp_path / "one" / "results.jsonl").read_text()
    assert two.stdout.count("pass@4") == 1  # rank 0 alone prints the table

    ranks = scored_by(tmp_path / "two.txt")  # each process scored its own whole problems, and only those
    assert set(ranks) == {"0", "1"} and not ranks["0"] & ranks["1"]
    assert ranks["0"] | ranks["1"] == scored_by(tmp_path / "one.txt")["0"]
