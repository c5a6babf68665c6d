"""Building a validated Config from the schema defaults, a YAML file (or the embedded default job), presets and
`--set` overrides."""

from __future__ import annotations

import copy
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from groupwise.algorithms.presets import PRESETS
from groupwise.config.names import hint, override_fix
from groupwise.config.paths import COMMAND_LINE_RULE, anchor_paths, file_rule
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


def embedded_default_path() -> Path:
    """The embedded default job: an ordinary config file, read when no config file is given."""
    return Path(str(resources.files("groupwise.config").joinpath(DEFAULT_CONFIG)))


def config_keys() -> list[str]:
    """Every `section.key` of the schema (for "did you mean")."""
    return [f"{section}.{key}" for section, field in Config.model_fields.items()
            for key in field.annotation.model_fields]


def parse_override(item: str) -> tuple[list[str], Any]:
    """`section.key=value` (value parsed as YAML, so numbers, booleans and lists work) -> (path, value)."""
    key, sep, raw = item.partition("=")
    if not sep or not key.strip() or "." not in key:
        meant = override_fix(key.strip(), raw.strip(), config_keys()) if sep and key.strip() else None
        raise GroupwiseError(f"--set '{item}' is not of the form section.key=value{hint(key.strip(), config_keys())}",
                             meant or "write e.g. --set train.steps=10")
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
        return f"unknown config key '{where}'{hint(where, config_keys())}"
    if where:
        return f"config '{where}': {message} (got {first.get('input')!r})"
    return message.removeprefix("Value error, ")


def _without_foreign_task_params(base: dict[str, Any], sets: dict[str, Any]) -> dict[str, Any]:
    """A file's task_params belong to its task: `--set data.task=OTHER` alone does not inherit them."""
    set_data = sets.get("data") if isinstance(sets.get("data"), dict) else {}
    base_data = base.get("data") if isinstance(base.get("data"), dict) else {}
    if "task" in set_data and set_data["task"] != base_data.get("task") and "task_params" in base_data:
        base = copy.deepcopy(base)
        base["data"].pop("task_params")
    return base


def _task_only_without_file(data: dict[str, Any]) -> dict[str, Any]:
    """With a data file the built-in task is unused: the resolved config says task null, no task_params."""
    section = data.get("data")
    if isinstance(section, dict) and section.get("path"):
        data = data | {"data": section | {"task": None, "task_params": {}}}
    return data


def build_config(path: Path | str | None = None, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Schema defaults < config file < --set; no file means the embedded default job (default.yaml, an
    ordinary config file). Then the algorithm preset fills the knobs not set explicitly. Relative paths in the
    file start at its folder, those in `overrides` at the current directory."""
    if path is None:
        return config_from_mapping(read_yaml(embedded_default_path()), overrides, written_by_user=False)
    return config_from_mapping(read_yaml(path), overrides, folder=Path(path).parent, source=str(path))


def config_from_mapping(mapping: dict[str, Any], overrides: list[str] | tuple[str, ...] = (), *,
                        folder: Path | None = None, source: str | None = None, written_by_user: bool = True,
                        path_rules: dict[str, str] | None = None) -> Config:
    """Schema defaults < `mapping` (sections as in a YAML file) < --set; then the preset, as `build_config`.

    `folder`: where the mapping's relative paths start (the folder of its file `source`; default: the current
    directory). `written_by_user`: notes about the mapping's own values are shown (not for the embedded default).
    `path_rules`: how paths already made absolute were resolved (compare's experiment file)."""
    if not isinstance(mapping, dict):
        raise GroupwiseError(f"a config must be a mapping of sections, not {type(mapping).__name__}",
                             "pass a dict like {'train': {'steps': 10}}, a YAML path, or groupwise.Config")
    if isinstance(overrides, str):
        raise GroupwiseError(f"overrides must be a list of section.key=value strings, not the string {overrides!r}",
                             f"wrap it in a list: [{overrides!r}]")
    base, rules = anchor_paths(mapping, folder or Path.cwd(), file_rule(source) if source else COMMAND_LINE_RULE)
    rules = (path_rules or {}) | rules
    sets: dict[str, Any] = {}
    for item in overrides:
        key, value = parse_override(item)
        set_path(sets, key, value)
    sets, set_rules = anchor_paths(sets, Path.cwd(), COMMAND_LINE_RULE)
    rules = {key: rule for key, rule in rules.items() if not _is_set(sets, key)} | set_rules
    data = deep_merge(_without_foreign_task_params(base, sets), sets)
    data = _task_only_without_file(apply_preset(data))
    try:
        cfg = Config.model_validate(data)
    except ValidationError as err:
        raise GroupwiseError(format_validation_error(err),
                             "fix the config (every key is listed in docs/configuration.md, or run "
                             "`groupwise config --reference`)") from err
    cfg.path_rules.update(rules)
    written = _keys(mapping) if written_by_user else set()
    cfg.notes[:] = [note for note in cfg.notes if note.split(" ", 1)[0] in written | _keys(sets)]
    return cfg


def _keys(mapping: dict[str, Any]) -> set[str]:
    """The `section.key` names a mapping sets (each note starts with the key whose value it adjusted)."""
    return {f"{section}.{key}" for section, values in mapping.items() if isinstance(values, dict)
            for key in values}


def _is_set(sets: dict[str, Any], key: str) -> bool:
    """Whether `--set` replaced the value at path key `key` (`rewards.functions[0].name`: the whole list)."""
    node: Any = sets
    for part in key.split("[", 1)[0].split("."):
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


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
        new = Config.model_validate(data)
    except ValidationError as err:
        raise GroupwiseError(format_validation_error(err), "fix the override") from err
    new.path_rules.update({key: rule for key, rule in cfg.path_rules.items() if not _is_set(changes, key)})
    return new
