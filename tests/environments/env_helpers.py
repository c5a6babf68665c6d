"""Environments referenced by tests as `tests/environments/env_helpers.py:NAME`."""

from __future__ import annotations

import zlib


class TwoTurns:
    """Step style: says 'again N' once, then done; rewards each turn by a hash of its text (0 or 1), so groups
    differ and train."""

    def reset(self, **row) -> None:
        self.turn = 0
        self.expression = row["expression"]
        return None

    def step(self, completion: str) -> tuple[str | None, float, bool]:
        self.turn += 1
        reward = float(zlib.crc32(completion.encode()) % 2)
        return (None if self.turn >= 2 else f"again {self.turn}"), reward, self.turn >= 2

