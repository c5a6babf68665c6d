"""The run folder a new training run writes to: created fresh, never reused silently."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from groupwise.errors import GroupwiseError


def default_run_dir() -> Path:
    return Path("runs") / time.strftime("run-%Y%m%d-%H%M%S")


def check_run_dir(run_dir: Path, overwrite: bool) -> None:
    """A new run may write to `run_dir`: it is missing, an empty folder, or `overwrite` replaces it."""
    if run_dir.exists() and not run_dir.is_dir():
        raise GroupwiseError(f"run folder '{run_dir}' exists and is not a folder", "choose another --run-dir")
    if run_dir.exists() and any(run_dir.iterdir()) and not overwrite:
        raise GroupwiseError(f"run folder '{run_dir}' already exists",
                             "pass --resume to continue it, --overwrite to replace it, or another --run-dir")


def prepare_run_dir(run_dir: Path | None, overwrite: bool) -> Path:
    """A fresh run folder: never reuse one silently."""
    run_dir = run_dir or default_run_dir()
    check_run_dir(run_dir, overwrite)
    if run_dir.exists() and any(run_dir.iterdir()):
        shutil.rmtree(run_dir)
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / ".write-test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as err:
        raise GroupwiseError(f"cannot write to run folder '{run_dir}': {err.strerror}",
                             "choose a writable --run-dir with free space") from err
    return run_dir
