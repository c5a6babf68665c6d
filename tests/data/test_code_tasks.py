"""python-functions and rust-functions tasks: rows, splits, sizes, and every reference passing its tests."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

from groupwise.data.tasks.catalog import available_tasks, build_task
from groupwise.data.tasks.code_functions import load_problems
from groupwise.errors import GroupwiseError
from groupwise.rewards import resolve_reward

TASKS = {"python-functions": "python", "rust-functions": "rust"}


@pytest.mark.parametrize("task", TASKS)
def test_task_is_registered_with_enough_problems(task: str) -> None:
    assert task in available_tasks()
    problems = load_problems(TASKS[task])
    assert len(problems) >= 30
    assert len({p["entry_point"] for p in problems}) == len(problems)


@pytest.mark.parametrize("task", TASKS)
def test_rows_have_prompt_tests_reference_and_entry_point(task: str) -> None:
    language = TASKS[task]
    for row in build_task(task, "train", None, 0):
        assert set(row) >= {"prompt", "tests", "reference", "entry_point"}
        assert row["entry_point"] in row["prompt"] and f"```{language}" in row["prompt"]
        assert row["tests"] and all(isinstance(t, str) and row["entry_point"] in t for t in row["tests"])
        assert row["entry_point"] in row["reference"]


@pytest.mark.parametrize("task", TASKS)
def test_splits_are_disjoint_deterministic_and_cover_everything(task: str) -> None:
    train = [r["entry_point"] for r in build_task(task, "train", None, 3)]
    heldout = [r["entry_point"] for r in build_task(task, "heldout", None, 3)]
    assert not set(train) & set(heldout)
    assert len(train) + len(heldout) == len(load_problems(TASKS[task]))
    assert 0.15 <= len(heldout) / (len(train) + len(heldout)) <= 0.25
    assert train == [r["entry_point"] for r in build_task(task, "train", None, 3)]
    assert train != [r["entry_point"] for r in build_task(task, "train", None, 4)]


def test_size_truncates_or_cycles() -> None:
    train = [r["entry_point"] for r in build_task("python-functions", "train", None, 0)]
    assert [r["entry_point"] for r in build_task("python-functions", "train", 5, 0)] == train[:5]
    cycled = [r["entry_point"] for r in build_task("python-functions", "train", len(train) + 3, 0)]
    assert cycled == train + train[:3]


def test_bad_split_and_size_are_clear_errors() -> None:
    with pytest.raises(GroupwiseError, match="unknown split"):
        build_task("rust-functions", "test", None, 0)
    with pytest.raises(GroupwiseError, match="size"):
        build_task("rust-functions", "train", 0, 0)


def _score_references(language: str, **params: object) -> tuple[list[float | None], float]:
    problems = load_problems(language)
    reward = resolve_reward("code_tests", {"language": language, **params})
    completions = [f"```{language}\n{p['reference']}```" for p in problems]
    start = time.monotonic()
    scores = reward([""] * len(problems), completions, tests=[p["tests"] for p in problems])
    return scores, time.monotonic() - start


@pytest.mark.slow
def test_every_python_reference_passes_its_tests() -> None:
    scores, elapsed = _score_references("python", workers=4)
    runs = sum(len(p["tests"]) for p in load_problems("python"))
    print(f"\npython references: {len(scores)} problems, {runs} sandboxed runs in {elapsed:.1f}s")
    failing = [p["entry_point"] for p, s in zip(load_problems("python"), scores, strict=True) if s != 1.0]
    assert not failing


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("cargo") is None, reason="cargo is not installed")
def test_every_rust_reference_passes_its_tests(tmp_path: Path) -> None:
    scores, elapsed = _score_references("rust", workers=4, target_dir=str(tmp_path / "target"))
    print(f"\nrust references: {len(scores)} crates built and tested in {elapsed:.1f}s (cold target dir)")
    failing = [p["entry_point"] for p, s in zip(load_problems("rust"), scores, strict=True) if s != 1.0]
    assert not failing  # throughput is measured by benchmarks/sandbox_throughput.py, not asserted here
