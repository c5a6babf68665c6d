"""A new user's first runs (issue 28): paths relative to the config file, errors that name the key and the rule,
helpful unknown keys, a missing column, an unreachable hub, checks in the `--nproc` parent, compare from elsewhere.

The run from another directory runs as a real `python -m groupwise.cli.main` subprocess (from the folder above
the project); the mistakes run through the same Typer app in this process (the `--nproc` parent's check fails
before any worker would start). Each test checks exit code and the exact stderr.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from groupwise.cli.main import app

CLI = [sys.executable, "-m", "groupwise.cli.main"]
JOB = {"model": {"name": "tiny-random", "dtype": "float32"},
       "data": {"task": None, "path": "rows.jsonl", "heldout_fraction": 0.25},
       "rewards": {"functions": [{"name": "my_rewards.py:has_digit"}]},
       "rollout": {"prompts_per_step": 2, "group_size": 2, "max_new_tokens": 4, "dtype": "float32"},
       "train": {"steps": 1, "threads": 1, "bf16": False}, "eval": {"before_after": False},
       "log": {"progress": False}}
PATH_FIX = ("a relative path in a config file starts at that file's folder; one given with --set or --data starts "
            "at the current directory")
DOWN_HUB = "http://127.0.0.1:9"  # nothing listens on port 9: a connection is refused at once


@dataclass
class Done:
    code: int
    stdout: str
    stderr: str
    seconds: float


def write_project(d: Path) -> None:
    """d/proj: a job whose data and reward file sit beside it; d/exp: an experiment whose base lacks its
    held-out file."""
    proj, exp = d / "proj", d / "exp"
    proj.mkdir()
    exp.mkdir()
    rows = "".join(json.dumps({"prompt": f"What is {i} + 1?", "answer": str(i + 1)}) + "\n" for i in range(8))
    (proj / "rows.jsonl").write_text(rows)
    (proj / "questions.jsonl").write_text(
        "".join(json.dumps({"question": f"What is {i} + 1?", "solution": str(i + 1)}) + "\n" for i in range(4)))
    (proj / "my_rewards.py").write_text("def has_digit(prompts, completions, **kw):\n"
                                        "    return [float(any(c.isdigit() for c in t)) for t in completions]\n")
    (proj / "job.yaml").write_text(yaml.safe_dump(JOB))
    (proj / "heldout_missing.yaml").write_text(yaml.safe_dump(JOB | {"data": JOB["data"] | {
        "heldout_path": "held.jsonl"}}))
    (exp / "rows.jsonl").write_text(rows)
    (exp / "job.yaml").write_text(yaml.safe_dump({"model": {"name": "tiny-random"}, "data": {
        "task": None, "path": "rows.jsonl", "heldout_path": "held.jsonl"}}))
    (exp / "experiment.yaml").write_text("base: job.yaml\nseeds: [0]\nvariants: {a: {}}\n"
                                         "eval: {problems: 2, samples: 2, k: [1]}\n")


def run(args: list[str], cwd: Path) -> Done:
    started = time.monotonic()
    done = subprocess.run(CLI + args, capture_output=True, text=True, timeout=300, cwd=cwd,
                          env=os.environ | {"OMP_NUM_THREADS": "1"})
    return Done(done.returncode, done.stdout, done.stderr, time.monotonic() - started)


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("first_contact")
    write_project(d)
    return d


def in_process(project: Path, monkeypatch, *args: str) -> Done:
    monkeypatch.chdir(project)
    started = time.monotonic()
    done = CliRunner().invoke(app, list(args))
    return Done(done.exit_code, done.stdout, done.stderr, time.monotonic() - started)


def one_error(done: Done) -> str:
    """The single stderr line of a failed command, after checking exit code 2 and that nothing else was said."""
    assert done.code == 2, done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    return lines[0]


def missing_heldout(path: Path, rule: str) -> str:
    """The error line for a `data.heldout_path` that is not there, resolved by `rule`."""
    return (f"error: data.heldout_path: held-out data file '{path}' does not exist ({rule}) -- fix "
            f"data.heldout_path ({PATH_FIX})")


def test_a_config_run_from_another_directory_finds_its_data_and_reward_file(project):
    done = run(["train", "proj/job.yaml", "--run-dir", "runs/a"], project)
    assert done.code == 0, done.stderr
    saved = yaml.safe_load((project / "runs" / "a" / "config.yaml").read_text())
    assert saved["data"]["path"] == str(project / "proj" / "rows.jsonl")
    assert saved["rewards"]["functions"][0]["name"] == f"{project / 'proj' / 'my_rewards.py'}:has_digit"


def test_a_heldout_path_given_with_set_starts_at_the_current_directory(project, monkeypatch):
    done = in_process(project, monkeypatch, "train", "proj/job.yaml", "--set", "data.heldout_path=nope.jsonl",
                      "--run-dir", "runs/b")
    assert one_error(done) == missing_heldout(project / "nope.jsonl",
                                              "relative to the current directory, as given on the command line")
    assert not (project / "runs" / "b").exists()


def test_a_heldout_path_in_the_config_file_starts_at_its_folder(project, monkeypatch):
    done = in_process(project, monkeypatch, "train", "proj/heldout_missing.yaml", "--run-dir", "runs/c")
    assert one_error(done) == missing_heldout(project / "proj" / "held.jsonl",
                                              "relative to the folder of proj/heldout_missing.yaml")
    assert not (project / "runs" / "c").exists()


def test_answer_match_without_an_answer_column_is_one_line_at_start_up(project, monkeypatch):
    done = in_process(project, monkeypatch, "train", "proj/job.yaml", "--set", "data.path=proj/questions.jsonl",
                      "--set", "data.columns={prompt: question}", "--set", "rewards.functions=[{name: answer_match}]",
                      "--run-dir", "runs/d")
    assert one_error(done) == (
        "error: reward 'answer_match' needs an 'answer' column, which the training data does not have (its "
        "columns: prompt, solution) -- map one with data.columns (e.g. {answer: YOUR_COLUMN}), or set "
        "rewards.functions to rewards that fit the data")
    assert not (project / "runs" / "d").exists()


def test_a_user_reward_needs_the_columns_it_takes_without_a_default(project, monkeypatch):
    (project / "proj" / "needs_solution.py").write_text(
        "def exact(completions, solution, **kw):\n    return [float(c == s) for c, s in zip(completions, solution)]\n")
    done = in_process(project, monkeypatch, "train", "proj/job.yaml", "--set",
                      "rewards.functions=[{name: proj/needs_solution.py:exact}]", "--run-dir", "runs/f")
    assert one_error(done).startswith("error: reward 'exact' needs a 'solution' column, which the training data "
                                      "does not have (its columns: answer, prompt) -- ")


@pytest.mark.parametrize("item, line", [
    ("train.step=3", "error: unknown config key 'train.step'; did you mean `train.steps`? -- fix the config (every "
                     "key is listed in docs/configuration.md, or run `groupwise config --reference`)"),
    ("rollout.learning_rate=1e-5", "error: unknown config key 'rollout.learning_rate'; did you mean "
                                   "`train.learning_rate`? -- fix the config (every key is listed in "
                                   "docs/configuration.md, or run `groupwise config --reference`)"),
    ("num_generations=8", "error: --set 'num_generations=8' is not of the form section.key=value; TRL's "
                          "`num_generations` is `rollout.group_size` in groupwise -- write --set rollout.group_size=8"),
    ("loss_type=dapo", "error: --set 'loss_type=dapo' is not of the form section.key=value; TRL's `loss_type` is "
                       "`algorithm.agg` in groupwise -- write --set algorithm.agg=token-mean"),
])
def test_near_miss_keys_and_trl_names_get_the_key_to_use(item, line, project, monkeypatch):
    assert one_error(in_process(project, monkeypatch, "train", "--set", item, "--run-dir", "runs/g")) == line


def test_nproc_checks_divisibility_in_the_parent_before_any_worker(project, monkeypatch):
    done = in_process(project, monkeypatch, "train", "proj/job.yaml", "--nproc", "2", "--set",
                      "rollout.prompts_per_step=3", "--run-dir", "runs/e")
    assert one_error(done) == ("error: rollout.prompts_per_step=3 does not divide by the world size 2 -- use a "
                               "multiple of 2 prompts per step, or 2 processes that divide it")
    assert done.stdout == "" and not (project / "runs" / "e").exists()


def test_an_unreachable_hub_is_one_line_at_once_not_a_minute_of_retries(project, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", DOWN_HUB)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    done = in_process(project, monkeypatch, "train", "--set", "model.name=someorg/somemodel", "--set",
                      "log.progress=false", "--run-dir", "runs/h")
    assert one_error(done) == (
        "error: cannot load model 'someorg/somemodel': the hub (http://127.0.0.1:9) cannot be reached and the "
        "model is not in the local cache -- connect to the network once, or use a local model folder, a .gguf "
        "file, or a built-in name (smollm2-135m, tiny-random)")
    assert done.seconds < 20  # the hub's retries alone took 54 s (issue 28)
    assert not (project / "runs" / "h").exists()


def test_compare_from_the_parent_directory_names_the_heldout_path_and_leaves_nothing(project, monkeypatch):
    done = in_process(project, monkeypatch, "compare", "exp/experiment.yaml", "--out", "out_fail")
    assert one_error(done) == missing_heldout(project / "exp" / "held.jsonl", "relative to the folder of exp/job.yaml")
    assert not (project / "out_fail").exists()


def test_a_data_option_starts_at_the_current_directory(project, monkeypatch):
    done = in_process(project, monkeypatch, "eval", "tiny-random", "--data", "proj/nope.jsonl")
    assert one_error(done) == (f"error: --data: data file '{project / 'proj' / 'nope.jsonl'}' does not exist "
                               "(relative to the current directory, as given on the command line) -- give an "
                               "existing .jsonl/.json/.parquet/.csv file")
