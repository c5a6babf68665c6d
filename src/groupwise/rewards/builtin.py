"""Imports the modules whose reward factories register themselves under built-in names."""

import importlib

_MODULES = ("basic", "text", "code")

for _module in _MODULES:
    try:
        importlib.import_module(f"groupwise.rewards.{_module}")
    except ModuleNotFoundError as _err:
        if _err.name != f"groupwise.rewards.{_module}":
            raise
