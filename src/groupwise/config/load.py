"""Building a validated Config from the embedded default, a YAML file, presets and `--set` overrides."""

from __future__ import annotations

import copy
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from groupwise.algorithms.presets import PRESETS
from groupwise.config.schema import Config
from groupwise.errors import GroupwiseError

DEFAULT_CONFIG = "default.yaml"


def read_yaml(path: Path | str) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise GroupwiseError(f"config file '{path}' does not exist", "give the path of a YAML config file")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        where = getattr(err, "problem_mark", None)
        line = f" at line {where.line + 1}" if where else ""
        raise GroupwiseError(f"config file '{path}' is not valid YAML{line}", "fix the YAML syntax") from err
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise GroupwiseError(f"config file '{path}' must be a mapping of sections", "see groupwise train --help")
    return data


def embedded_default() -> dict[str, Any]:
    text = resources.files("groupwise.config").joinpath(DEFAULT_CONFIG).read_text()
    return yaml.safe_load(text)


def parse_override(item: str) -> tuple[list[str], Any]:
    """`section.key=value` (value parsed as YAML, so numbers, booleans and lists work) -> (path, value)."""
    key, sep, raw = item.partition("=")
    if not sep or not key.strip() or "." not in key:
        raise GroupwiseError(f"--set '{item}' is not of the form section.key=value",
                             "write e.g. --set train.steps=10")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key.strip().split("."), value


def deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def set_path(data: dict[str, Any], path: list[str], value: Any) -> None:
    node = data
    for part in path[:-1]:
        if not isinstance(node.setdefault(part, {}), dict):
            raise GroupwiseError(f"--set {'.'.join(path)}: '{part}' is not a section", "check the key path")
        node = node[part]
    node[path[-1]] = value


def apply_preset(data: dict[str, Any]) -> dict[str, Any]:
    """Preset values sit under the user's explicit algorithm keys: any knob set by hand wins."""
    algorithm = data.get("algorithm") or {}
    if not isinstance(algorithm, dict):
        return data
    name = algorithm.get("preset", "grpo")
    if name not in PRESETS:
        raise GroupwiseError(f"unknown algorithm.preset '{name}'", f"use one of {', '.join(sorted(PRESETS))}")
    return data | {"algorithm": PRESETS[name] | algorithm}


def format_validation_error(err: ValidationError) -> str:
    first = err.errors()[0]
    where = ".".join(str(p) for p in first["loc"])
    kind, message = first["type"], first["msg"]
    if kind == "extra_forbidden":
        return f"unknown config key '{where}'"
    if where:
        return f"config '{where}': {message} (got {first.get('input')!r})"
    return message.removeprefix("Value error, ")


def _without_foreign_task_params(default: dict[str, Any], user: dict[str, Any]) -> dict[str, Any]:
    """The default job's task_params belong to its task: a user who names another task does not inherit them."""
    user_data = user.get("data") if isinstance(user.get("data"), dict) else {}
    if "task" in user_data and user_data["task"] != default["data"].get("task"):
        default = copy.deepcopy(default)
        default["data"].pop("task_params", None)
    return default


def build_config(path: Path | str | None = None, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Default < file < --set; then the algorithm preset fills the knobs not set explicitly."""
    return config_from_mapping(read_yaml(path) if path is not None else {}, overrides)


def config_from_mapping(mapping: dict[str, Any], overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Default < `mapping` (sections as in a YAML file) < --set; then the preset, as `build_config`."""
    if not isinstance(mapping, dict):
        raise GroupwiseError(f"a config must be a mapping of sections, not {type(mapping).__name__}",
                             "pass a dict like {'train': {'steps': 10}}, a YAML path, or groupwise.Config")
    default, user = embedded_default(), copy.deepcopy(mapping)
    if isinstance(overrides, str):
        raise GroupwiseError(f"overrides must be a list of section.key=value strings, not the string {overrides!r}",
                             f"wrap it in a list: [{overrides!r}]")
    for item in overrides:
        key, value = parse_override(item)
        set_path(user, key, value)
    data = deep_merge(_without_foreign_task_params(default, user), user)
    data = apply_preset(data)
    try:
        return Config.model_validate(data)
    except ValidationError as err:
        raise GroupwiseError(format_validation_error(err),
                             "fix the config (see `groupwise train --help` and README's configuration table)"
                             ) from err


def dump_config(cfg: Config) -> str:
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)


def override_config(cfg: Config, overrides: list[str] | tuple[str, ...]) -> Config:
    """`cfg` with `section.key=value` overrides; a new algorithm.preset resets the knobs it sets, except those
    overridden in the same call."""
    if isinstance(overrides, str):
        raise GroupwiseError(f"overrides must be a list of section.key=value strings, not the string {overrides!r}",
                             f"wrap it in a list: [{overrides!r}]")
    data, changes = cfg.model_dump(mode="json"), {}
    for item in overrides:
        key, value = parse_override(item)
        set_path(changes, key, value)
    algorithm = changes.get("algorithm")
    if isinstance(algorithm, dict) and "preset" in algorithm:
        data["algorithm"] = {k: v for k, v in data["algorithm"].items() if k not in PRESETS.get(
            algorithm["preset"], {})}
    data = apply_preset(deep_merge(data, changes))
    try:
        return Config.model_validate(data)
    except ValidationError as err:
        raise GroupwiseError(format_validation_error(err), "fix the override") from err
