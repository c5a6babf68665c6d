"""The format reward of examples/experiments/python_tool.yaml: a small bonus for an episode whose `python` tool ran.

The embedded model rarely writes a tool call even after a worked example (docs/environments.md: 4 of 64 sampled
first turns on 3-digit products), and an episode is right only after a call; the bonus makes every group that has
a call learnable, while success (total >= 1) still needs the right answer.
"""


def python_ran(prompts, completions, environments=None, **_):
    """0.2 when the episode's `python` tool ran at least once (a well-formed call to it), else 0."""
    return [0.2 if environment is not None and environment.calls > 0 else 0.0 for environment in environments]
