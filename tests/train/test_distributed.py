"""One run on 1 process and on 2 torchrun processes (gloo, CPU) gives the same completions and the same model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from torch.distributed.checkpoint import FileSystemReader

import groupwise.runtime.distributed as distributed
from groupwise.config.load import build_config
from groupwise.errors import GroupwiseError
from groupwise.train.loop import training_loop
from groupwise.train.metrics import read_metrics

pytestmark = pytest.mark.usefixtures("one_thread")

HELPERS = "tests/train/reward_helpers.py"
BASE = ["model.name=tiny-random", "rollout.prompts_per_step=4", "rollout.group_size=4", "rollout.max_new_tokens=6",
        "train.micro_batch_size=4", "train.steps=3", "eval.before_after=false", "log.progress=false",
        "data.train_size=32", "data.heldout_size=8", "train.threads=1", "log.samples_per_step=4",
        "model.dtype=float32", "train.bf16=false", "rollout.dtype=float32", "train.learning_rate=0.01",
        f"rewards.functions=[{{name: '{HELPERS}:record_rank'}}]"]
MODES = {
    # LoRA, GRPO, the batch-wide std (the advantages need every rank's rewards, gathered by the producer on its
    # own process group), asynchronous rollouts a step ahead, the before/after evaluation
    "grpo-lora-async": ["algorithm.scale=batch", "eval.before_after=true", "eval.num_problems=7", "eval.samples=2",
                        "eval.batch_size=3", "rollout.max_staleness=1"],
    # full fine-tuning (FSDP2 on 2 processes), DAPO's dynamic sampling (uneven refill rounds, so ranks hold
    # different numbers of micro-batches), token-mean, the difficulty filter, and beta 0.04 (DAPO's is 0): the
    # reference model is sharded too
    "dapo-full": ["algorithm.preset=dapo", "lora.enabled=false", "algorithm.max_sampling_rounds=3",
                  "algorithm.overlong_cache=4", "data.difficulty_filter={visits: 1}", "train.learning_rate=0.001",
                  "algorithm.beta=0.04"],
    # two-turn episodes (a step-style environment, its reward a column), with dynamic sampling and an evaluation
    "episodes-lora": ["environment.path=tests/environments/env_helpers.py:TwoTurns", "rollout.max_new_tokens=4",
                      "algorithm.dynamic_sampling=true", "eval.before_after=true", "eval.num_problems=3",
                      "eval.samples=2", "eval.batch_size=3"],
}


def torchrun(nproc: int, overrides: list[str], run_dir: Path, record: Path, *extra: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}", *extra,
               "-m", "groupwise.cli.main", "train", "--run-dir", str(run_dir)]
    command += [arg for item in overrides for arg in ("--set", item)]
    env = os.environ | {"GROUPWISE_TEST_RECORD": str(record), "OMP_NUM_THREADS": "1"}
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)


def world_size_invariant(key: str) -> bool:
    """A logged metric that one process and two must agree on: all but timings, memory and the world size."""
    return not (key.endswith("_s") or key.startswith("memory/") or key in ("tokens_per_s", "world_size"))


def weights(run_dir: Path) -> dict[str, torch.Tensor]:
    final = run_dir / "final"
    adapter = final / "adapter_model.safetensors"
    return load_file(adapter if adapter.exists() else final / "model.safetensors")


def sharded_chunks(checkpoint: Path, name: str = "model.model.layers.0.mlp.up_proj.weight") -> int:
    """How many pieces a weight was saved in: 1 for a replicated weight, W for one FSDP2 sharded over W ranks."""
    return len(FileSystemReader(checkpoint).read_metadata().state_dict_metadata[name].chunks)


def samples(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "samples.jsonl").read_text().splitlines()]


def scored_by(record: Path) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in record.read_text().splitlines():
        rank, prompt = line.split("\t", 1)
        out.setdefault(rank, []).append(prompt)
    return out


@pytest.mark.parametrize("mode", list(MODES))
def test_two_processes_train_the_same_model_as_one(mode, tmp_path, monkeypatch):
    overrides = BASE + MODES[mode]
    monkeypatch.setenv("GROUPWISE_TEST_RECORD", str(tmp_path / "one.txt"))
    training_loop(build_config(None, overrides), tmp_path / "one")
    done = torchrun(2, overrides, tmp_path / "two", tmp_path / "two.txt")
    assert done.returncode == 0, done.stderr[-3000:]

    assert samples(tmp_path / "two") == samples(tmp_path / "one")  # every group: same completions and rewards
    one, two = weights(tmp_path / "one"), weights(tmp_path / "two")
    assert one.keys() == two.keys()
    assert max(float((one[k] - two[k]).abs().max()) for k in one) <= 1e-5

    metrics = read_metrics(tmp_path / "two")
    assert [m["step"] for m in metrics] == [1, 2, 3] and {m["world_size"] for m in metrics} == {2}
    assert all(m["grad_norm"] > 0 and m["skipped_update"] == 0 for m in metrics)  # every step trained
    if "episodes" in mode:  # every episode ran its two turns, on either world size
        assert [m["env/turns_mean"] for m in metrics] == [2.0] * 3 and "messages" in samples(tmp_path / "two")[0]
    if "async" in mode:  # batches 2 and 3 came from the weights of steps 0 and 1
        assert [m["rollout/staleness"] for m in metrics] == [0.0, 1.0, 1.0]
    if "dapo" in mode:  # refill rounds ran, some of them too small to reach every rank
        assert any(m["sampling_rounds"] > 1 for m in metrics), [m["sampling_rounds"] for m in metrics]
    for a, b in zip(read_metrics(tmp_path / "one"), metrics, strict=True):  # entropy, kl, ratio_mean, clip fractions...
        assert sorted(filter(world_size_invariant, a)) == sorted(filter(world_size_invariant, b))
        for key in filter(world_size_invariant, a):
            assert a[key] == pytest.approx(b[key], abs=1e-5), key

    if "full" in mode:  # FSDP2: each rank held, and saved, its own half of every weight and of the AdamW state
        last = tmp_path / "two" / "checkpoint-000003"
        assert {"__0_0.distcp", "__1_0.distcp", ".metadata"} <= {p.name for p in last.iterdir()}
        assert sharded_chunks(last) == 2 and sharded_chunks(last, "optimizer.state.model.norm.weight.exp_avg") == 2
    summaries = [json.loads((tmp_path / run / "summary.json").read_text()) for run in ("one", "two")]
    assert [{k: s.get(k) for k in ("base", "trained")} for s in summaries] == [
        {k: summaries[0].get(k) for k in ("base", "trained")}] * 2

    ranks = scored_by(tmp_path / "two.txt")  # each process scored its own groups, and only those
    assert set(ranks) == {"0", "1"} and not set(ranks["0"]) & set(ranks["1"])
    assert sorted(ranks["0"] + ranks["1"]) == sorted(scored_by(tmp_path / "one.txt")["0"])


def test_prompts_per_step_must_divide_by_the_world_size(monkeypatch):
    monkeypatch.setattr(distributed, "world_size", lambda: 2)
    with pytest.raises(GroupwiseError, match="prompts_per_step=3 does not divide by the world size 2"):
        distributed.check_divisible(3)
    distributed.check_divisible(4)


def test_shards_are_contiguous_and_cover_every_item(monkeypatch):
    monkeypatch.setattr(distributed, "world_size", lambda: 2)
    shares = []
    for r in (0, 1):
        monkeypatch.setattr(distributed, "rank", lambda r=r: r)
        shares.append(distributed.shard(5))
    assert shares == [range(0, 2), range(2, 5)]


def test_reductions_are_the_identity_on_one_process():
    assert distributed.world_size() == 1 and distributed.is_main() and distributed.shard(3) == range(3)
    assert distributed.all_sum(2.5) == 2.5 and distributed.all_max(1.0) == 1.0
    assert distributed.all_gather_objects({"a": 1}) == [{"a": 1}]
    assert distributed.all_sum_dict({"x": 1.0}) == {"x": 1.0}
    assert distributed.run_on_main(lambda: 7) == 7
