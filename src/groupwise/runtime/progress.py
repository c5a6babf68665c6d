"""Rich progress bars: training steps with reward, learnable fraction and ETA; counted work for evaluation."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


def output_console(stderr: bool = False) -> Console:
    """A console that wraps long lines (warnings, table titles) only in a terminal: in a log file or a pipe each
    line stays whole, for grep and for a reader whose window is wider."""
    console = Console(stderr=stderr)
    console.soft_wrap = not console.is_terminal
    return console


def _columns() -> list:
    return [TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            TextColumn("eta"), TimeRemainingColumn(), TextColumn("{task.fields[info]}")]


class StepProgress:
    """Shows step, reward, learnable fraction and ETA; prints warnings above the bar."""

    def __init__(self, total: int, *, enabled: bool = True, console: Console | None = None) -> None:
        self.console = console or output_console(stderr=True)
        self.progress = Progress(*_columns(), console=self.console, disable=not enabled)
        self.task = self.progress.add_task("train", total=total, info="")

    def __enter__(self) -> StepProgress:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def update(self, step: int, metrics: dict[str, Any]) -> None:
        info = (f"reward {metrics.get('reward/mean', float('nan')):.3f}  "
                f"learnable {metrics.get('learnable_fraction', 0):.2f}  "
                f"len {metrics.get('completion_len/mean', 0):.1f}  {metrics.get('step_s', 0):.1f}s/step")
        self.progress.update(self.task, completed=step, info=info)
        if not self.progress.live.is_started:  # disabled bar: keep a plain log line per step
            self.console.print(f"step {step}: {info}")

    def warn(self, message: str) -> None:
        self.console.print(f"[yellow]warning:[/yellow] {message}")


@contextlib.contextmanager
def count_progress(total: int, description: str, *, enabled: bool = True,
                   console: Console | None = None) -> Iterator[Callable[[int], None]]:
    with Progress(*_columns(), console=console or output_console(stderr=True), disable=not enabled) as progress:
        task = progress.add_task(description, total=total, info="")
        yield lambda n: progress.advance(task, n)
