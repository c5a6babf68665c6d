"""Multi-turn episodes on top of an engine: each turn is one `generate` call on the conversation so far.

`runner.py` runs a batch of episodes and returns the trainer's `Rollout`, whose `loss_mask` keeps the
environment's tokens out of the loss; `styles.py` turns an environment (step style, or tools as methods like
TRL's `environment_factory`) into replies; `tool_calls.py` parses `<tool_call>{json}</tool_call>`; `chat.py`
renders turns with the chat template; `log.py` records each episode. The environments a user names live in
`groupwise.environments`.
"""
