"""The training prompts, in a seeded shuffled order epoch after epoch."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any


@dataclass
class PromptStream:
    """Training rows in a seeded shuffled order, epoch after epoch; `cursor` is all the state resume needs."""

    rows: list[dict[str, Any]]
    texts: list[str]
    seed: int
    cursor: int = 0
    order: list[int] = field(default_factory=list)

    def _epoch_order(self, epoch: int) -> list[int]:
        order = list(range(len(self.rows)))
        random.Random(f"{self.seed}:{epoch}").shuffle(order)
        return order

    def __call__(self, n: int) -> tuple[list[dict[str, Any]], list[str]]:
        picked = []
        for _ in range(n):
            epoch, index = divmod(self.cursor, len(self.rows))
            if index == 0 or not self.order:
                self.order = self._epoch_order(epoch)
            picked.append(self.order[index])
            self.cursor += 1
        return [self.rows[i] for i in picked], [self.texts[i] for i in picked]
