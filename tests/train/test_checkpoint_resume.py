"""Checkpoints: resumed runs match uninterrupted ones; broken checkpoints are skipped; NaN streaks stop."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import groupwise.train.loop as loop_module
import groupwise.train.step as step_module
from groupwise.config.load import dump_config
from groupwise.errors import GroupwiseError
from groupwise.train.checkpoint import (
    MANIFEST,
    PARTIAL_PREFIX,
    WEIGHTS,
    is_intact,
    list_checkpoints,
    load_latest_intact,
    resume_config,
    truncate_logs,
)
from groupwise.train.loop import training_loop
from groupwise.train.metrics import read_metrics

TIMING = ("_s", "tokens_per_s")
VARIED = "rewards.functions=[{name: format_regex, params: {pattern: '[0-9]'}}]"  # rewards vary: weights move


pytestmark = pytest.mark.usefixtures("one_thread")


def final_weights(run_dir: Path) -> dict[str, torch.Tensor]:
    """The trained weights in run_dir/final (adapter or full model)."""
    final = run_dir / "final"
    adapter = final / "adapter_model.safetensors"
    return load_file(adapter if adapter.exists() else final / "model.safetensors")


def without_timing(record: dict) -> dict:
    """The record without machine measurements: timings and peak memory (a resumed process has its own)."""
    return {k: v for k, v in record.items() if not k.endswith(TIMING) and not k.startswith("memory/")}


def crash_on_call(monkeypatch, call: int) -> None:
    """Make the loop's grpo_step raise on its `call`-th call (a crash in the middle of a run)."""
    real, calls = loop_module.grpo_step, {"n": 0}

    def flaky(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == call:
            raise RuntimeError("simulated crash")
        return real(*args, **kwargs)

    monkeypatch.setattr(loop_module, "grpo_step", flaky)


class Counter:
    """A stateful component: counts steps; its state travels in the checkpoints' extra_state."""

    def __init__(self) -> None:
        self.seen = 0

    def state_dict(self) -> dict:
        return {"seen": self.seen}

    def load_state_dict(self, state: dict) -> None:
        self.seen = state["seen"]


MODES = {
    "lora": ["lora.dropout=0.1", "data.difficulty_filter={visits: 1}"],  # dropout and the filter: more state
    "full": ["lora.enabled=false", "algorithm.beta=0.04"],
    # bf16 weights with float32 masters: the masters travel in the checkpoint, or the resumed run drifts
    "full_bf16_offload": ["lora.enabled=false", "algorithm.beta=0", "model.dtype=bfloat16",
                          "train.optimizer_offload=true"],
    "lora_8bit": ["train.optimizer=adamw_8bit", "lora.r=64"],  # r 64: adapters large enough to quantize
}


@pytest.mark.parametrize("mode", list(MODES))
def test_resumed_run_ends_like_uninterrupted_run(mode, tiny_config, tmp_path, monkeypatch, request):
    if mode == "lora_8bit":
        request.getfixturevalue("torchao")
    extra = MODES[mode]
    cfg = tiny_config("train.steps=4", "train.save_every=2", "train.keep_checkpoints=5",
                      "log.samples_per_step=1", "train.learning_rate=0.01", VARIED, *extra)
    whole, broken = tmp_path / "whole", tmp_path / "broken"
    training_loop(cfg, whole)
    crash_on_call(monkeypatch, 4)  # steps 1-3 logged, the last checkpoint is step 2
    with pytest.raises(RuntimeError, match="simulated crash"):
        training_loop(cfg, broken)
    assert [s for s, _ in list_checkpoints(broken)] == [2]
    assert [r["step"] for r in read_metrics(broken)] == [1, 2, 3]
    monkeypatch.undo()
    training_loop(cfg, broken, resume=True)
    if mode == "lora":
        assert "difficulty_filter" in load_latest_intact(broken).state["extra_state"]
    a, b = final_weights(whole), final_weights(broken)
    assert a.keys() == b.keys()
    assert max(float((a[k] - b[k]).abs().max()) for k in a) <= 1e-6
    records_a, records_b = read_metrics(whole), read_metrics(broken)
    assert all(r["grad_norm"] > 0 for r in records_a[1:]), "nothing trained: the comparison would be empty"
    assert [r["step"] for r in records_b] == [1, 2, 3, 4]
    assert [without_timing(r) for r in records_a] == [without_timing(r) for r in records_b]
    samples = [json.loads(line)["step"] for line in (broken / "samples.jsonl").read_text().splitlines()]
    assert samples == [1, 2, 3, 4]
    assert (broken / "summary.json").exists()


def test_checkpoints_are_rotated_and_carry_manifest_and_extra_state(tiny_config, tmp_path):
    cfg = tiny_config("train.steps=4", "train.save_every=1", "train.keep_checkpoints=2")
    counter = Counter()
    counter.seen = 7
    training_loop(cfg, tmp_path / "run", components={"counter": counter})
    checkpoints = list_checkpoints(tmp_path / "run")
    assert [s for s, _ in checkpoints] == [3, 4]
    for _, folder in checkpoints:
        manifest = json.loads((folder / MANIFEST).read_text())
        assert set(manifest["files"]) == {p.name for p in folder.iterdir()} - {MANIFEST}
        assert is_intact(folder)
    latest = load_latest_intact(tmp_path / "run")
    assert latest.step == 4 and latest.cursor == 4 * cfg.rollout.prompts_per_step
    assert latest.state["extra_state"] == {"counter": {"seen": 7}}
    fresh = Counter()
    training_loop(cfg.model_copy(update={"train": cfg.train.model_copy(update={"steps": 5})}), tmp_path / "run",
          resume=True, components={"counter": fresh})
    assert fresh.seen == 7
    assert [r["step"] for r in read_metrics(tmp_path / "run")] == [1, 2, 3, 4, 5]


def test_corrupt_or_partial_checkpoints_are_never_loaded(tiny_config, tmp_path):
    run = tmp_path / "run"
    training_loop(tiny_config("train.steps=3", "train.save_every=1", "train.keep_checkpoints=3"), run)
    (run / f"{PARTIAL_PREFIX}000004").mkdir()  # a write killed half-way
    (run / f"{PARTIAL_PREFIX}000004" / WEIGHTS).write_bytes(b"half")
    newest = list_checkpoints(run)[-1][1]
    data = bytearray((newest / WEIGHTS).read_bytes())
    data[-1] ^= 0xFF  # one flipped bit in the newest checkpoint
    (newest / WEIGHTS).write_bytes(bytes(data))
    (list_checkpoints(run)[1][1] / MANIFEST).unlink()  # a checkpoint without its manifest
    latest = load_latest_intact(run)
    assert latest is not None and latest.step == 1
    assert not list(run.glob(f"{PARTIAL_PREFIX}*"))


def test_resume_without_any_checkpoint_starts_over(tiny_config, tmp_path, monkeypatch):
    cfg = tiny_config("train.steps=3", "train.save_every=5")
    run = tmp_path / "run"
    crash_on_call(monkeypatch, 3)
    with pytest.raises(RuntimeError):
        training_loop(cfg, run)
    assert not list_checkpoints(run) and len(read_metrics(run)) == 2
    monkeypatch.undo()
    training_loop(cfg, run, resume=True)
    assert [r["step"] for r in read_metrics(run)] == [1, 2, 3]
    assert [s for s, _ in list_checkpoints(run)] == [3]


def test_truncate_logs_drops_later_steps_and_cut_lines(tmp_path):
    lines = [json.dumps({"step": s, "x": s}) for s in (1, 2, 3)]
    (tmp_path / "metrics.jsonl").write_text("\n".join(lines) + "\n" + '{"step": 4, "x"')
    truncate_logs(tmp_path, 2)
    assert [r["step"] for r in read_metrics(tmp_path)] == [1, 2]


def test_nonfinite_streak_stops_with_last_good_checkpoint_intact(tiny_config, tmp_path, monkeypatch):
    cfg = tiny_config("train.steps=8", "train.save_every=1", "train.keep_checkpoints=5",
                      "train.max_nonfinite=2")
    real_step, real_loss, poisoned = loop_module.grpo_step, step_module.policy_loss, {"step": 0}

    def counting_step(*args, **kwargs):
        poisoned["step"] += 1
        return real_step(*args, **kwargs)

    def nan_loss(*args, **kwargs):
        loss, stats = real_loss(*args, **kwargs)
        return (loss * float("nan"), stats) if poisoned["step"] >= 3 else (loss, stats)

    monkeypatch.setattr(loop_module, "grpo_step", counting_step)
    monkeypatch.setattr(step_module, "policy_loss", nan_loss)
    run = tmp_path / "run"
    with pytest.raises(GroupwiseError, match="2 non-finite updates in a row") as err:
        training_loop(cfg, run)
    assert "\n" not in str(err.value) and " -- " in str(err.value) and "step 2" in str(err.value)
    assert [s for s, _ in list_checkpoints(run)] == [1, 2]
    assert all(is_intact(folder) for _, folder in list_checkpoints(run))
    assert [r["skipped_update"] for r in read_metrics(run)] == [0.0, 0.0, 1.0, 1.0]


def test_resume_config_allows_only_safe_changes(tiny_config, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text(dump_config(tiny_config("train.steps=6")))
    (run / "checkpoint-000005").mkdir()
    assert resume_config(run, ["train.steps=9", "rollout.group_size=4"]).train.steps == 9  # 4: unchanged
    with pytest.raises(GroupwiseError, match="rollout.group_size cannot change when resuming"):
        resume_config(run, ["rollout.group_size=2"])
    with pytest.raises(GroupwiseError, match="checkpoint at step 5, beyond train.steps=4"):
        resume_config(run, ["train.steps=4"])
    with pytest.raises(GroupwiseError, match="not a run folder"):
        resume_config(tmp_path, [])
