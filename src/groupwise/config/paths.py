"""Where a relative path in a config starts, and local paths stored absolute so a run folder works anywhere.

The rule: a path written in a config file starts at that file's folder (as `compare`'s `base:` does); a path
given on the command line (`--set`, `--data`) or in a Python dict starts at the current directory. Either way
it is stored absolute, and `path_rules` remembers which rule made it so an error can say so.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

from groupwise.errors import GroupwiseError

HUB_DATA_PREFIX = "hf:"
COMMAND_LINE_RULE = "relative to the current directory, as given on the command line"
PATH_RULE = ("a relative path in a config file starts at that file's folder; one given with --set or --data "
             "starts at the current directory")


def file_rule(source: Path | str) -> str:
    """How a relative path written in the config file `source` was resolved."""
    return f"relative to the folder of {source}"


def absolute(path: str, folder: Path | str | None = None) -> str:
    """`path` with `~` expanded, made absolute against `folder` (default: the current directory); symlinks kept
    as written."""
    path = os.path.expanduser(path)
    return os.path.abspath(path if folder is None else os.path.join(folder, path))


def looks_local_model(name: str, folder: Path | str | None = None) -> bool:
    """Whether a model name means a local path rather than a hub id or a built-in name.

    It does when it starts like a path (/ ~ ./ ../), names a .gguf file, has more parts than a hub id (org/name),
    exists, or its first folder exists (both looked up in `folder`, default the current directory): with a
    `runs` folder, `runs/x` is a missing local folder, not a hub id.
    """
    if name.startswith(("/", "~", "./", "../")) or name in (".", "..") or name.endswith(".gguf"):
        return True
    if name.count("/") > 1:
        return True
    base = Path(folder) if folder is not None else Path()
    path = Path(name)
    return (base / path).exists() or (len(path.parts) > 1 and (base / path.parts[0]).is_dir())


def resolve_model_name(name: str) -> str:
    return absolute(name) if looks_local_model(name) else name


def is_local_data(path: Any) -> bool:
    """A local data file (not hf:NAME, not unset)."""
    return isinstance(path, str) and bool(path.strip()) and not path.startswith(HUB_DATA_PREFIX)


def resolve_data_path(path: str | None) -> str | None:
    """A local data file made absolute; `hf:NAME` and None unchanged."""
    return absolute(path) if is_local_data(path) else path


def reward_file(name: Any) -> tuple[str, str] | None:
    """(file, function) of a `path/file.py:function` reward name; None for built-in and module names."""
    if not isinstance(name, str):
        return None
    target, sep, function = name.rpartition(":")
    return (target, function) if sep and target.endswith(".py") else None


def resolve_reward_name(name: str) -> str:
    """`path/file.py:function` with the file made absolute; built-in and `module:function` names unchanged."""
    found = reward_file(name)
    return f"{absolute(found[0])}:{found[1]}" if found else name


# ---- the path keys of a config mapping (sections as written in YAML) ---------------------------------------


def _anchor_value(key: str, value: Any, folder: Path) -> str | None:
    """`value` of path key `key` made absolute against `folder`, or None when it is not a relative local path."""
    if not isinstance(value, str) or os.path.isabs(os.path.expanduser(value)):
        return None
    if key == "model.name":
        return absolute(value, folder) if looks_local_model(value, folder) else None
    if key.endswith(".name") or key == "environment.path":  # a reward, or an environment class: file.py:NAME
        found = reward_file(value)
        return f"{absolute(found[0], folder)}:{found[1]}" if found else None
    return absolute(value, folder) if is_local_data(value) else None


def path_entries(mapping: dict[str, Any]) -> list[tuple[str, dict[str, Any], str]]:
    """(key, the dict holding it, its name there) of every path a config mapping can hold."""
    found = []
    for section, names in (("model", ("name", "cache_dir")), ("data", ("path", "heldout_path")),
                           ("environment", ("path",))):
        node = mapping.get(section)
        if isinstance(node, dict):
            found += [(f"{section}.{name}", node, name) for name in names if name in node]
    functions = mapping.get("rewards", {}).get("functions") if isinstance(mapping.get("rewards"), dict) else None
    for index, spec in enumerate(functions if isinstance(functions, list) else []):
        if isinstance(spec, dict) and "name" in spec:
            found.append((f"rewards.functions[{index}].name", spec, "name"))
    return found


def anchor_paths(mapping: dict[str, Any], folder: Path | str, rule: str) -> tuple[dict[str, Any], dict[str, str]]:
    """A copy of `mapping` with its relative local paths made absolute against `folder`, and `rule` for each key
    so changed (what an error about that path says)."""
    mapping = copy.deepcopy(mapping)
    rules = {}
    for key, node, name in path_entries(mapping):
        anchored = _anchor_value(key, node[name], Path(folder))
        if anchored is not None:
            node[name], rules[key] = anchored, rule
    return mapping, rules


# ---- checking that the local paths exist -----------------------------------------------------------------


def configured_paths(cfg: Any) -> list[tuple[str, str, str]]:
    """(key, what it names, path) of every local path the config reads, in the order a run reads them."""
    found = []
    name = cfg.model.name
    if looks_local_model(name):
        found.append(("model.name", "GGUF file" if name.endswith(".gguf") else "model folder", name))
    for key, what in (("path", "data file"), ("heldout_path", "held-out data file")):
        value = getattr(cfg.data, key)
        if is_local_data(value):
            found.append((f"data.{key}", what, value))
    for index, spec in enumerate(cfg.rewards.functions or []):
        if (file := reward_file(spec.name)) is not None:
            found.append((f"rewards.functions[{index}].name", "reward file", file[0]))
    return found


def missing_path_error(key: str, what: str, path: str, rules: dict[str, str]) -> GroupwiseError:
    """One line naming the key, the path and the rule that made it absolute (when it was written relative)."""
    rule = rules.get(key)
    return GroupwiseError(f"{key}: {what} '{path}' does not exist" + (f" ({rule})" if rule else ""),
                          f"fix {key} ({PATH_RULE})")


def check_local_paths(cfg: Any) -> None:
    """Every local path the config names exists; else one error naming its key and the rule that applied."""
    for key, what, path in configured_paths(cfg):
        if not Path(path).exists():
            raise missing_path_error(key, what, path, getattr(cfg, "path_rules", {}))
