"""Rewards a program can verify: the built-ins a config names, and user functions with TRL's signature.

The files here are the rewards a user can name (`basic`, `text`, `code`, `reward_model`), their registry and
the scoring of a batch; the test judges that run model-written code sit apart in `judges/`.
"""

from groupwise.rewards.catalog import available_rewards, resolve_reward
from groupwise.rewards.registry import register_reward

__all__ = ["available_rewards", "register_reward", "resolve_reward"]
