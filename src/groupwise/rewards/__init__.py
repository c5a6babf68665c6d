"""Rewards a program can verify: a registry of built-ins and user functions with TRL's signature."""

from groupwise.rewards.registry import available_rewards, register_reward, resolve_reward

__all__ = ["available_rewards", "register_reward", "resolve_reward"]
