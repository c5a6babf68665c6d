"""The environments a config can name (`environment.name`): `python_tool` and `code_feedback`, one file each;
`registry.py` finds them, or loads your own class (`environment.path`) and turns it into what the sampler runs.
The episode machinery (turns, tool calls, masks) is `groupwise.rollout.episodes`; docs/environments.md."""
