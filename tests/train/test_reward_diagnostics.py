"""Reward diagnostics (e.g. code_tests' tests_not_run, limit_hit) reach metrics.jsonl as per-step shares."""

import json
from pathlib import Path

import pytest

from groupwise.train.loop import training_loop

HELPERS = str(Path(__file__).with_name("reward_helpers.py"))


def _metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").open()]


def test_diagnostics_become_step_metrics(tiny_config, one_thread, tmp_path):
    cfg = tiny_config(f"rewards.functions=[{{name: '{HELPERS}:flagged'}}]", "rollout.max_new_tokens=4")
    training_loop(cfg, tmp_path / "run")
    for row in _metrics(tmp_path / "run"):
        assert row["reward/flagged/tests_not_run"] == 0.5  # 8 of the step's 16 samples
        assert row["reward/flagged/limit_hit"] == pytest.approx(1 / 3)  # 4 of the 12 that have a value


def test_diagnostics_survive_dynamic_sampling(tiny_config, one_thread, tmp_path):
    cfg = tiny_config("algorithm.dynamic_sampling=true", "algorithm.max_sampling_rounds=12",
                      f"rewards.functions=[{{name: '{HELPERS}:flagged'}}]", "rollout.max_new_tokens=4")
    training_loop(cfg, tmp_path / "run")
    rows = _metrics(tmp_path / "run")
    assert any(row["sampling_rounds"] > 1 for row in rows)  # refill rounds ran and were scored too
    for row in rows:  # every group carries the same pattern, so any set of whole groups gives the same shares
        assert row["reward/flagged/tests_not_run"] == 0.5
        assert row["reward/flagged/limit_hit"] == pytest.approx(1 / 3)
