"""FSDP2 checkpoints (torch.distributed.checkpoint shards): resumed on another world size, and exported whole."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from test_distributed import BASE, sharded_chunks, torchrun, weights

from groupwise.config.load import build_config
from groupwise.errors import GroupwiseError
from groupwise.models.export import export_run
from groupwise.train.checkpoint import is_intact, list_checkpoints, resume_config
from groupwise.train.loop import training_loop
from groupwise.train.metrics import read_metrics

pytestmark = pytest.mark.usefixtures("one_thread")

FULL = [*BASE, "lora.enabled=false", "train.learning_rate=0.001"]  # GRPO, beta 0.04: a sharded reference too


@pytest.fixture(scope="module")
def whole(tmp_path_factory) -> Path:
    """Three steps of full fine-tuning on one process: what every split run must end equal to."""
    run = tmp_path_factory.mktemp("whole") / "run"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GROUPWISE_TEST_RECORD", str(run.parent / "record.txt"))
        training_loop(build_config(None, FULL), run)
    return run


def max_difference(a: Path, b: Path) -> float:
    one, two = weights(a), weights(b)
    assert one.keys() == two.keys()
    return max(float((one[k] - two[k]).abs().max()) for k in one)


def test_sharded_checkpoint_exports_whole_and_resumes_on_one_process(whole, tmp_path, monkeypatch):
    split = tmp_path / "split"
    first = torchrun(2, [*FULL, "train.steps=2"], split, tmp_path / "record2.txt")
    assert first.returncode == 0, first.stderr[-3000:]
    checkpoint = split / "checkpoint-000002"
    assert is_intact(checkpoint) and sharded_chunks(checkpoint) == 2  # two ranks, one shard each
    assert {p.name for p in checkpoint.iterdir()} == {".metadata", "__0_0.distcp", "__1_0.distcp", "trainer.pt",
                                                      "state.pt", "manifest.json"}

    exported = export_run(split, tmp_path / "exported", checkpoint=2)  # the shards gathered in this process
    trained = weights(split)  # final/ of the 2-step run: the same step's weights, gathered by the ranks
    plain = load_file(exported / "model.safetensors")
    assert plain.keys() == trained.keys() and all(torch.equal(plain[k], trained[k]) for k in plain)

    monkeypatch.setenv("GROUPWISE_TEST_RECORD", str(tmp_path / "record1.txt"))
    training_loop(resume_config(split, ["train.steps=3"]), split, resume=True)  # 2 processes -> 1
    assert max_difference(whole, split) <= 1e-5
    assert [m["world_size"] for m in read_metrics(split)] == [2, 2, 1]
    assert (split / "checkpoint-000003" / "weights.safetensors").exists()  # one process writes the plain format


def test_one_process_checkpoint_resumes_on_two_and_writes_shards(whole, tmp_path, monkeypatch):
    split = tmp_path / "split"
    monkeypatch.setenv("GROUPWISE_TEST_RECORD", str(tmp_path / "record1.txt"))
    training_loop(build_config(None, [*FULL, "train.steps=2"]), split)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
               "-m", "groupwise.cli.main", "train", "--resume", str(split), "--set", "train.steps=3"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300,
                          env=os.environ | {"OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-3000:]  # 1 process -> 2
    assert max_difference(whole, split) <= 1e-5
    assert [m["world_size"] for m in read_metrics(split)] == [1, 1, 2]
    assert [step for step, _ in list_checkpoints(split)] == [2, 3]
    assert sharded_chunks(split / "checkpoint-000003") == 2


def test_export_of_a_missing_checkpoint_names_it(whole, tmp_path):
    with pytest.raises(GroupwiseError, match="no 'checkpoint-000009' weights"):
        export_run(whole, tmp_path / "out", checkpoint=9)
