"""Reward functions referenced by tests as `tests/train/reward_helpers.py:NAME`."""

import zlib


def half_learnable(prompts, completions, completion_ids=None, expression=None, **_):
    """Prompts whose first operand is even get a 0/1 reward that varies with the completion; odd ones always 0."""
    out = []
    for text, expr in zip(completions, expression, strict=True):
        even = int(expr.split()[0]) % 2 == 0
        out.append(float(zlib.crc32(text.encode()) % 2) if even else 0.0)
    return out
