"""Bad inputs through the real CLI: exit 2, one `error: <problem> -- <fix>` line, no traceback, no half run.

Every case runs once per module (a fixture) through the Typer app in this process; a few also run as real
`python -m groupwise.cli.main` subprocesses, in parallel, to cover the entry point itself. Each test then
checks one result.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner

from groupwise.cli.main import app
from groupwise.config.load import build_config, dump_config

CLI = [sys.executable, "-m", "groupwise.cli.main"]
TINY = ["model.name=tiny-random", "rollout.prompts_per_step=2", "rollout.group_size=4",
        "rollout.max_new_tokens=4", "train.micro_batch_size=8", "train.steps=1", "eval.before_after=false",
        "log.progress=false", "data.train_size=8", "data.heldout_size=4"]


@dataclass
class Case:
    name: str
    args: list[str]  # after `python -m groupwise.cli.main`; {d} is the shared folder of input files
    expect: str  # text the error line must contain
    train: bool = True  # a `train` command: its --run-dir must not be left behind


def train_case(name: str, expect: str, *sets: str, args: tuple[str, ...] = ()) -> Case:
    """`train` with the tiny job, extra --set items and arguments."""
    items = [arg for item in (*TINY, *sets) for arg in ("--set", item)]
    return Case(name, ["train", *args, *items], expect)


def reward(spec: str) -> str:
    return f"rewards.functions=[{spec}]"


def data(path: str, *more: str) -> tuple[str, ...]:
    return ("data.task=null", f"data.path={path}", *more)


CASES = [
    # config
    train_case("unknown-key", "unknown config key 'model.bogus'", "model.bogus=1"),
    train_case("wrong-type", "train.steps", "train.steps=abc"),
    train_case("out-of-range", "rollout.top_p", "rollout.top_p=2"),
    train_case("impossible-batch", "must divide", "algorithm.mini_batches=3"),
    train_case("no-rewards", "rewards.functions is empty", "rewards.functions=[]"),
    train_case("no-data", "data needs", "data.task=null"),
    train_case("bad-preset", "unknown algorithm.preset 'nope'", "algorithm.preset=nope"),
    train_case("bad-yaml", "not valid YAML", args=("{d}/bad.yaml",)),
    train_case("yaml-not-mapping", "must be a mapping", args=("{d}/list.yaml",)),
    Case("section-not-mapping", ["train", "{d}/scalar_section.yaml"], "config 'train'"),
    # data
    train_case("missing-data-file", "does not exist", *data("{d}/missing.jsonl")),
    train_case("empty-dataset", "has no rows", *data("{d}/empty.jsonl")),
    train_case("bad-json-line", "line 2 is not valid JSON", *data("{d}/broken.jsonl")),
    train_case("missing-column", "no column 'query'",
               *data("{d}/no_prompt.jsonl", "data.columns={prompt: query}")),
    train_case("prompt-wrong-type", "prompt is a int", *data("{d}/int_prompt.jsonl")),
    train_case("unknown-task", "nope", "data.task=nope"),
    # model paths
    train_case("missing-model-folder", "does not exist", "model.name={d}/no_such_model/"),
    train_case("folder-without-config", "has no config.json", "model.name={d}/empty_model"),
    train_case("missing-gguf", "GGUF file", "model.name={d}/missing.gguf"),
    # reward references
    train_case("unknown-reward", "unknown reward 'nope'", reward("{name: nope}")),
    train_case("missing-module", "cannot be imported", reward("{name: 'no_such_module_xyz:score'}")),
    train_case("missing-reward-file", "does not exist", reward("{name: '{d}/missing.py:score'}")),
    train_case("broken-reward-file", "failed to import", reward("{name: '{d}/broken_reward.py:score'}")),
    train_case("bad-reward-params", "bad params", reward("{name: answer_match, params: {bogus: 1}}")),
    train_case("bad-regex", "pattern", reward("{name: format_regex, params: {pattern: '('}}")),
    # command-line flags and folders
    train_case("set-without-equals", "is not of the form section.key=value", "train.steps"),
    Case("resume-not-a-run", ["train", "--resume", "{d}/empty_model"], "not a run folder", train=False),
    Case("resume-unsafe-override", ["train", "--resume", "{d}/run", "--set", "train.learning_rate=1"],
         "cannot change when resuming", train=False),
    Case("resume-with-config", ["train", "{d}/list.yaml", "--resume", "{d}/run"], "--resume", train=False),
    Case("export-missing-run", ["export", "{d}/no_such_run", "--out", "{d}/export"], "not a run folder",
         train=False),
    Case("export-unfinished-run", ["export", "{d}/run", "--out", "{d}/export"], "no 'final' weights",
         train=False),
    Case("run-dir-exists", ["train", "--run-dir", "{d}/run"], "already exists", train=False),
    Case("run-dir-under-a-file", ["train", "--run-dir", "{d}/rows.txt/run"], "cannot write to run folder",
         train=False),
]


def write_inputs(d: Path) -> None:
    """The bad files the cases point at, and one (untrained) run folder."""
    (d / "bad.yaml").write_text("train: [1, 2\n")
    (d / "list.yaml").write_text("- a\n- b\n")
    (d / "scalar_section.yaml").write_text("train: 5\n")
    (d / "rows.txt").write_text("prompt,answer\n")
    (d / "empty.jsonl").write_text("")
    (d / "broken.jsonl").write_text('{"prompt": "1+1", "answer": "2"}\n{"prompt": \n')
    (d / "no_prompt.jsonl").write_text(json.dumps({"question": "1+1", "answer": "2"}) + "\n")
    (d / "int_prompt.jsonl").write_text(json.dumps({"prompt": 7, "answer": "2"}) + "\n")
    (d / "empty_model").mkdir()
    (d / "broken_reward.py").write_text("def score(:\n")
    (d / "run").mkdir()
    (d / "run" / "config.yaml").write_text(dump_config(build_config(None, TINY)))


def snapshot(d: Path) -> dict[str, bytes]:
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


@dataclass
class Outcome:
    returncode: int
    stderr: str
    run_dir: Path


BY_NAME = {c.name: c for c in CASES}
# also run as real subprocesses: a config error, a data error (loads the data stack), a run-folder error
IN_SUBPROCESS = ("unknown-key", "missing-data-file", "export-unfinished-run")


def case_args(case: Case, d: Path) -> tuple[list[str], Path]:
    args = [a.replace("{d}", str(d)) for a in case.args]
    run_dir = d / f"run-{case.name}"
    return (args + ["--run-dir", str(run_dir)] if case.train else args), run_dir


def run_in_subprocess(case: Case, d: Path) -> Outcome:
    args, run_dir = case_args(case, d)
    done = subprocess.run(CLI + args, capture_output=True, text=True, timeout=240, cwd=d)
    return Outcome(done.returncode, done.stderr, run_dir)


def run_in_process(case: Case, d: Path, runner: CliRunner) -> Outcome:
    args, run_dir = case_args(case, d)
    done = runner.invoke(app, args)
    if done.exception is not None and not isinstance(done.exception, SystemExit):  # what a user would see
        raise done.exception
    return Outcome(done.exit_code, done.stderr, run_dir)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> tuple[Path, dict[str, bytes]]:
    d = tmp_path_factory.mktemp("bad_inputs")
    write_inputs(d)
    return d, snapshot(d)


@pytest.fixture(scope="module")
def results(inputs) -> dict[str, Outcome]:
    d, _ = inputs
    with ThreadPoolExecutor(max_workers=3) as pool, pytest.MonkeyPatch.context() as patch:
        real = pool.map(lambda name: run_in_subprocess(BY_NAME[name], d), IN_SUBPROCESS)
        patch.chdir(d)
        found = {c.name: run_in_process(c, d, CliRunner()) for c in CASES}
        found.update({f"{name}/subprocess": outcome for name, outcome in zip(IN_SUBPROCESS, real, strict=True)})
    return found


@pytest.mark.parametrize("key", [c.name for c in CASES] + [f"{n}/subprocess" for n in IN_SUBPROCESS])
def test_bad_input_is_one_clear_line_with_exit_2(key, results):
    case = BY_NAME[key.split("/")[0]]
    done = results[key]
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("error: ") and " -- " in lines[0], lines[0]
    assert case.expect in lines[0], lines[0]
    assert not done.run_dir.exists(), f"left a half run: {sorted(p.name for p in done.run_dir.iterdir())}"


def test_failed_commands_leave_the_inputs_as_they_were(inputs, results):
    d, before = inputs
    after = snapshot(d)
    assert sorted(set(after) ^ set(before)) == [] and after == before


def test_there_are_at_least_25_cases():
    assert len(CASES) >= 25


def test_a_full_disk_is_reported_before_training(tmp_path, monkeypatch):
    from groupwise.errors import GroupwiseError
    from groupwise.train.run_dir import prepare_run_dir

    def full(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(Path, "write_text", full)
    with pytest.raises(GroupwiseError, match="No space left on device -- choose a writable --run-dir"):
        prepare_run_dir(tmp_path / "run", overwrite=False)
