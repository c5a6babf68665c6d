"""`--data PATH_OR_TASK`: turn a built-in task name or a data file path into config overrides."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from groupwise.config.load import build_config
from groupwise.config.paths import COMMAND_LINE_RULE, absolute
from groupwise.config.schema import Config, DataConfig
from groupwise.data.files import EXTENSIONS, HUB_PREFIX
from groupwise.data.tasks.catalog import available_tasks
from groupwise.errors import GroupwiseError
from groupwise.models.trained import is_run_dir
from groupwise.rewards.compute import default_reward_specs


def _quoted(value: str) -> str:
    """A YAML-safe scalar for --set (a JSON string is valid YAML)."""
    return json.dumps(value)


def is_data_file(spec: str) -> bool:
    return spec.startswith(HUB_PREFIX) or spec.endswith(EXTENSIONS) or Path(spec).is_file()


def data_overrides(spec: str | None, current: Config, use: Literal["train", "heldout"]) -> list[str]:
    """Overrides that point the data section at `spec`; the whole file becomes the `use` split. Rewards that
    were the old data's defaults (a run's config.yaml names them) become the new data's defaults."""
    if not spec:
        return []
    follow = current.rewards.functions == default_reward_specs(current.data)
    return _point_at(spec, current.data, use) + (["rewards.functions=null"] if follow else [])


def _point_at(spec: str, current: DataConfig, use: Literal["train", "heldout"]) -> list[str]:
    if is_data_file(spec):
        if not spec.startswith(HUB_PREFIX) and not Path(spec).is_file():
            raise GroupwiseError(f"--data: data file '{absolute(spec)}' does not exist ({COMMAND_LINE_RULE})",
                                 "give an existing .jsonl/.json/.parquet/.csv file")
        out = ["data.task=null", f"data.path={_quoted(spec)}", "data.task_params={}"]
        if use == "heldout":
            return out + [f"data.heldout_path={_quoted(spec)}"]
        return out + ["data.heldout_fraction=0", "data.heldout_path=null"]
    if spec not in available_tasks():
        raise GroupwiseError(f"--data '{spec}' is neither a data file nor a built-in task",
                             f"use a file path or one of {', '.join(available_tasks())}")
    out = [f"data.task={_quoted(spec)}", "data.path=null", "data.heldout_path=null"]
    return out if spec == current.task else out + ["data.task_params={}"]


def base_config(model: str, config: Path | None, overrides: list[str]) -> Config:
    """The config evaluation starts from: a run folder's own config, or --config/--set for a model name."""
    if is_run_dir(model):
        return build_config(Path(model) / "config.yaml", overrides)
    return build_config(config, overrides + [f"model.name={_quoted(model)}"])
