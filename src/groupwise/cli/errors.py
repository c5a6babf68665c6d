"""User mistakes end as one line on stderr and exit code 2; never a traceback."""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer

from groupwise.errors import GroupwiseError

EXIT_USAGE = 2
ERROR_DIR_ENV = "GROUPWISE_ERROR_DIR"  # set by `--nproc`: its workers leave their error line here (cli/launch.py)


def report_error(err: GroupwiseError) -> None:
    """`error: problem -- fix` on stderr; a `--nproc` worker writes it for its parent, which prints one."""
    line = f"error: {err}"
    folder = os.environ.get(ERROR_DIR_ENV)
    if folder:
        Path(folder, f"rank-{os.environ.get('RANK', '0')}.txt").write_text(line + "\n")
    else:
        print(line, file=sys.stderr)


def one_line_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except GroupwiseError as err:
            report_error(err)
            raise typer.Exit(EXIT_USAGE) from None

    return wrapper
