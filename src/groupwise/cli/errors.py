"""User mistakes end as one line on stderr and exit code 2; never a traceback."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any

import typer

from groupwise.errors import GroupwiseError

EXIT_USAGE = 2


def one_line_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except GroupwiseError as err:
            print(f"error: {err}", file=sys.stderr)
            raise typer.Exit(EXIT_USAGE) from None

    return wrapper
