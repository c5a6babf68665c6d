"""Local paths in a config are stored absolute, so a run folder works from any directory."""

from __future__ import annotations

import os
from pathlib import Path

HUB_DATA_PREFIX = "hf:"


def absolute(path: str) -> str:
    """`path` with `~` expanded, made absolute against the current directory (symlinks kept as written)."""
    return os.path.abspath(os.path.expanduser(path))


def looks_local_model(name: str) -> bool:
    """Whether a model name means a local path rather than a hub id or a built-in name.

    It does when it starts like a path (/ ~ ./ ../), names a .gguf file, has more parts than a hub id (org/name),
    exists, or its first folder exists here: with a `runs` folder, `runs/x` is a missing local folder, not a hub id.
    """
    if name.startswith(("/", "~", "./", "../")) or name in (".", "..") or name.endswith(".gguf"):
        return True
    if name.count("/") > 1:
        return True
    path = Path(name)
    return path.exists() or (len(path.parts) > 1 and Path(path.parts[0]).is_dir())


def resolve_model_name(name: str) -> str:
    return absolute(name) if looks_local_model(name) else name


def resolve_data_path(path: str | None) -> str | None:
    """A local data file made absolute; `hf:NAME` and None unchanged."""
    if path is None or path.startswith(HUB_DATA_PREFIX) or not path.strip():
        return path
    return absolute(path)


def resolve_reward_name(name: str) -> str:
    """`path/file.py:function` with the file made absolute; built-in and `module:function` names unchanged."""
    target, sep, function = name.rpartition(":")
    if sep and target.endswith(".py"):
        return f"{absolute(target)}:{function}"
    return name
