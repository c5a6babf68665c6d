"""Imports the modules whose reward factories register themselves under built-in names."""

from groupwise.rewards import basic, code, text  # noqa: F401 - imported for their registrations
