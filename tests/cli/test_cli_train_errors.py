"""Bad train input through the Typer app in this process (tests/cli/test_bad_inputs.py also runs real processes)."""

import pytest
from typer.testing import CliRunner

from groupwise.cli.main import app


@pytest.mark.parametrize("args, text", [
    (["train", "--set", "rollout.group_size=1"], "rollout.group_size"),
    (["train", "--set", "algorithm.mini_batches=3"], "must divide"),
    (["train", "--set", "model.bogus=1"], "unknown config key 'model.bogus'"),
    (["train", "missing.yaml"], "does not exist"),
])
def test_cli_reports_bad_input_in_one_line_with_exit_2(args, text, tmp_path):
    done = CliRunner().invoke(app, args + ["--run-dir", str(tmp_path / "run")])
    assert done.exit_code == 2, done.output
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and text in lines[0]
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "run").exists()


def test_existing_run_folder_is_not_overwritten(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "keep.txt").write_text("precious")
    done = CliRunner().invoke(app, ["train", "--run-dir", str(run), "--set", "model.name=tiny-random"])
    assert done.exit_code == 2 and "--resume" in done.stderr and "--overwrite" in done.stderr
    assert (run / "keep.txt").read_text() == "precious"
