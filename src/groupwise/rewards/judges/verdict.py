"""One sample's code-test outcome, shared by the Python and Rust runners and the reward metrics."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Verdict:
    """How one completion fared against its row's tests; `score` is the partial credit."""

    passed: int
    total: int
    tests_not_run: bool = False  # the program ended (or was stopped) before every test had run
    limit_hit: bool = False  # a sandbox limit (time, CPU, memory, processes, output, disk) stopped it
    tests_unjudgeable: int | None = None  # tests that no printed value can pass (Rust); None: every test can

    @property
    def score(self) -> float:
        """The fraction of tests passed (0.0 when there are none)."""
        return self.passed / self.total if self.total else 0.0
