"""Quiet by default: other libraries' warnings and load bars only with --verbose (issue 12)."""

from __future__ import annotations

import subprocess
import sys

CLI = [sys.executable, "-m", "groupwise.cli.main", "train"]
TINY = ["model.name=tiny-random", "rollout.prompts_per_step=2", "rollout.group_size=4", "eval.before_after=false",
        "log.progress=false", "data.train_size=32", "data.heldout_size=8", "train.threads=1", "train.steps=1",
        "rollout.max_new_tokens=4", "log.samples_per_step=0", "rewards.functions=[{name: math_equivalence}]"]


def test_quiet_by_default_verbose_shows_library_warnings(tmp_path):
    """math-verify's timeout warning and other libraries' warnings appear only with --verbose."""
    common = [a for item in TINY for a in ("--set", item)]
    runs = [subprocess.Popen(CLI + ["--run-dir", str(tmp_path / name)] + flags + common, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True) for name, flags in (("q", []), ("v", ["--verbose"]))]
    quiet, loud = (subprocess.CompletedProcess(run.args, 0, *run.communicate(timeout=300)) for run in runs)
    assert [run.returncode for run in runs] == [0, 0], quiet.stderr + loud.stderr  # the two ran side by side
    assert "Timeout is disabled" in loud.stderr
    for noise in ("Timeout is disabled", "Warning", "Loading weights"):
        assert noise not in quiet.stderr + quiet.stdout, quiet.stderr


def test_output_that_is_not_a_terminal_keeps_long_lines_and_table_titles_whole():
    import io

    from rich.table import Table

    from groupwise.runtime.progress import output_console

    console = output_console()  # under pytest stdout is not a terminal, as in a log file or a pipe
    console.file = out = io.StringIO()
    title = "held-out evaluation (200 problems, 16 samples each; correct: reward >= 1.0) with a long name"
    table = Table(title=title)
    table.add_column("metric")
    table.add_row("pass@1")
    console.print(table)
    warning = "warning: " + "a long explanation of what went wrong and how to fix it " * 3
    console.print(warning)
    lines = out.getvalue().splitlines()
    assert lines[0] == title and warning in lines  # neither wrapped at 80 columns
