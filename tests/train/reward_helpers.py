"""Reward functions referenced by tests as `tests/train/reward_helpers.py:NAME`."""

import zlib


def half_learnable(prompts, completions, completion_ids=None, expression=None, **_):
    """Prompts whose first operand is even get a 0/1 reward that varies with the completion; odd ones always 0.
    A completion of an episode (a list of messages, as TRL passes it) is read as its last message."""
    out = []
    for completion, expr in zip(completions, expression, strict=True):
        text = completion if isinstance(completion, str) else completion[-1]["content"]
        even = int(expr.split()[0]) % 2 == 0
        out.append(float(zlib.crc32(text.encode()) % 2) if even else 0.0)
    return out


def flagged(prompts, completions, completion_ids=None, expression=None, **_):
    """half_learnable's values, plus diagnostics: tests_not_run on every other sample, limit_hit on 1 of 3
    of the samples that have one (every 4th has none)."""
    from groupwise.rewards.values import RewardValues

    n = len(completions)
    return RewardValues(half_learnable(prompts, completions, expression=expression),
                        {"tests_not_run": [float(i % 2) for i in range(n)],
                         "limit_hit": [None if i % 4 == 0 else float(i % 4 == 1) for i in range(n)]})


def record_rank(prompts, completions, expression=None, **_):
    """half_learnable's reward; appends 'RANK<TAB>prompt' per scored group to $GROUPWISE_TEST_RECORD (if set)."""
    import os

    path = os.environ.get("GROUPWISE_TEST_RECORD")
    if path:
        with open(path, "a") as f:
            for prompt in dict.fromkeys(prompts):
                f.write(f"{os.environ.get('RANK', '0')}\t{prompt!r}\n")
    return half_learnable(prompts, completions, expression=expression)


def fails_on_rank_one(prompts, completions, expression=None, **_):
    """half_learnable's reward on every rank but rank 1, where it raises: a reward that fails on one shard."""
    import os

    if os.environ.get("RANK") == "1":
        raise ValueError("cannot parse this row")
    return half_learnable(prompts, completions, expression=expression)
