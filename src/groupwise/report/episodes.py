"""The report's episodes: for each step that logged one, its first episode's conversation, turn by turn."""

from __future__ import annotations

import html
from typing import Any

Record = dict[str, Any]


def episodes_html(samples: list[Record]) -> str:
    """One episode per step (the first completion of the step's first logged group), each message with its role,
    and its reward; empty when the run had no environment."""
    parts = []
    seen: set[int] = set()
    for group in samples:
        step = int(group["step"])
        if step in seen or not group.get("messages"):
            continue
        seen.add(step)
        rewards = group.get("rewards") or [None]
        turns = "".join(f"<div class='turn {html.escape(str(m.get('role')))}'><b>{html.escape(str(m.get('role')))}"
                        f"</b><pre>{html.escape(str(m.get('content')))}</pre></div>" for m in group["messages"][0])
        parts.append(f"<details{' open' if not parts else ''}><summary>step {step}: reward {rewards[0]}"
                     f"</summary>{turns}</details>")
    return "\n".join(parts)
