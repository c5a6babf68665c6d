"""Imports the modules whose reward factories register themselves under built-in names."""

from groupwise.rewards import basic, code, reward_model, text  # noqa: F401 - imported for their registrations
