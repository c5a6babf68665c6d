"""Python objects handed to `groupwise.train` / `evaluate` / `select`, turned into what the CLI path uses.

In-memory datasets are written as JSONL files and named in the config (so the run folder stays complete and
`groupwise eval RUN` works on it); reward callables are wrapped to receive TRL's arguments; a preloaded model
and tokenizer are prepared as `load_configured_model` prepares its own.
"""

from __future__ import annotations

import importlib
import inspect
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from groupwise.config.schema import Config, RewardSpec
from groupwise.environments.registry import give_environment
from groupwise.errors import GroupwiseError
from groupwise.rewards.compute import RewardFunction, build_reward_functions

Row = dict[str, Any]
RewardItem = str | dict[str, Any] | RewardSpec | Callable[..., Any]


# ---- datasets ---------------------------------------------------------------------------------------------


def as_rows(data: Any, argument: str) -> list[Row]:
    """A list of dicts, a `datasets.Dataset` or a `pandas.DataFrame` as a list of row dicts."""
    module = type(data).__module__.split(".")[0]
    if module == "datasets" and hasattr(data, "to_list"):
        rows = data.to_list()
    elif module == "pandas" and hasattr(data, "to_dict"):
        rows = data.to_dict(orient="records")
    elif isinstance(data, list | tuple):
        rows = list(data)
    else:
        raise GroupwiseError(f"{argument}= is a {type(data).__name__}",
                             f"pass {argument}= as a list of dicts, a datasets.Dataset or a pandas.DataFrame")
    if not rows:
        raise GroupwiseError(f"{argument}= has no rows", f"give {argument}= at least one row")
    for number, row in enumerate(rows, start=1):
        if not isinstance(row, dict):
            raise GroupwiseError(f"{argument}= row {number} is a {type(row).__name__}, not a dict",
                                 "give each row as a dict like {'prompt': ..., 'answer': ...}")
    return rows


def _plain(value: Any) -> Any:
    """numpy scalars and arrays (pandas, datasets) as plain Python values for JSON."""
    if hasattr(value, "tolist"):
        return value.tolist()
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def write_rows(rows: list[Row], path: Path, argument: str) -> Path:
    """Rows as a JSONL file (what data.path reads); a value JSON cannot hold is one clear error."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        text = "".join(json.dumps(row, default=_plain) + "\n" for row in rows)
    except (TypeError, ValueError) as err:
        raise GroupwiseError(f"{argument}= holds a value that cannot be saved as JSON: {err}",
                             "keep row values to strings, numbers, booleans, lists and dicts") from err
    path.write_text(text, encoding="utf-8")
    return path


def dataset_overrides(train_file: Path, heldout_file: Path | None) -> list[str]:
    """Point the data section at the written files (replacing data.task / data.path)."""
    out = ["data.task=null", f"data.path={json.dumps(str(train_file))}", "data.task_params={}"]
    return out + [f"data.heldout_path={json.dumps(str(heldout_file)) if heldout_file else 'null'}"]


# ---- rewards ----------------------------------------------------------------------------------------------


def callable_name(fn: Callable[..., Any]) -> str:
    return getattr(fn, "__name__", None) or type(fn).__name__


def callable_reference(fn: Callable[..., Any]) -> str:
    """`module:function` (or `script.py:function` for the running script), what config.yaml records."""
    module, name = getattr(fn, "__module__", None) or "", getattr(fn, "__qualname__", callable_name(fn))
    if module == "__main__":
        script = getattr(sys.modules.get("__main__"), "__file__", None)
        if script:
            return f"{Path(script).resolve()}:{name}"
    if module:
        try:
            if getattr(importlib.import_module(module), name, None) is fn:
                return f"{module}:{name}"
        except ImportError:
            pass
    return f"{module or 'python'}:{name}"


def _spec(item: RewardItem, index: int) -> RewardSpec:
    if isinstance(item, RewardSpec):
        return item
    if isinstance(item, str):
        return RewardSpec(name=item)
    if isinstance(item, dict):
        try:
            return RewardSpec(**item)
        except Exception as err:  # noqa: BLE001 - pydantic's message, as one line
            raise GroupwiseError(f"rewards[{index}] {item!r} is not a reward entry ({str(err).splitlines()[0]})",
                                 "give {'name': ..., 'params': {...}, 'weight': ...}") from err
    raise GroupwiseError(f"rewards[{index}] is a {type(item).__name__}",
                         "give reward functions (callables), built-in names or {'name': ..., 'params': ...}")


def build_rewards(items: Sequence[RewardItem], weights: Sequence[float] | None,
                  cfg: Config) -> tuple[list[RewardFunction], list[dict[str, Any]]]:
    """Reward functions for the loop, and the entries config.yaml records for them. Callables get TRL's
    inputs (``RewardFunction.trl_inputs``), as `module:function` entries in a config do."""
    if isinstance(items, str) or callable(items) or not isinstance(items, Sequence):
        raise GroupwiseError(f"rewards= is a {type(items).__name__}, not a list",
                             "pass rewards=[fn, 'answer_match', ...]")
    if not items:
        raise GroupwiseError("rewards= is empty", "give at least one reward function or built-in name")
    if weights is not None:
        if isinstance(weights, str) or not isinstance(weights, Sequence) or len(weights) != len(items):
            count = len(weights) if isinstance(weights, Sequence) else type(weights).__name__
            raise GroupwiseError(f"reward_weights= has {count} values for {len(items)} rewards",
                                 "give one float per reward, in the same order, or reward_weights=None")
        if not all(isinstance(w, int | float) and not isinstance(w, bool) for w in weights):
            raise GroupwiseError("reward_weights= holds a value that is not a number", "give floats")
    functions: list[RewardFunction] = []
    entries: list[dict[str, Any]] = []
    for index, item in enumerate(items):
        weight = None if weights is None else float(weights[index])
        if callable(item) and not isinstance(item, RewardSpec | dict | str):
            if inspect.isclass(item):
                raise GroupwiseError(f"rewards[{index}] is the class {item.__name__}",
                                     "pass an instance or a function")
            fn = RewardFunction(callable_name(item), item, 1.0 if weight is None else weight, trl_inputs=True)
            entries.append({"name": callable_reference(item), "weight": fn.weight})
        else:
            spec = _spec(item, index)
            spec = spec if weight is None else spec.model_copy(update={"weight": weight})
            fn = build_reward_functions([spec], cfg.sandbox.model_dump())[0]
            entries.append(spec.model_dump(mode="json"))
        fn.name = _unique(fn.name, functions)
        functions.append(fn)
    return functions, entries


def _unique(name: str, existing: list[RewardFunction]) -> str:
    taken = {f.name for f in existing}
    return name if name not in taken else f"{name}_{len(existing)}"


# ---- a preloaded model ------------------------------------------------------------------------------------


def prepare_model(model: Any, tokenizer: Any, cfg: Config) -> tuple[Any, Any]:
    """A caller's model on the configured device, its tokenizer padding on the left (as the loader does)."""
    from groupwise.models.load import resolve_device, training_attention

    if tokenizer is None:
        raise GroupwiseError("model= was given without tokenizer=",
                             "pass its tokenizer too, e.g. tokenizer=AutoTokenizer.from_pretrained(...)")
    if not (hasattr(model, "generate") and hasattr(model, "parameters")):
        raise GroupwiseError(f"model= is a {type(model).__name__}, not a transformers causal LM",
                             "pass e.g. AutoModelForCausalLM.from_pretrained(...), or model.name in the config")
    if not hasattr(tokenizer, "apply_chat_template"):
        raise GroupwiseError(f"tokenizer= is a {type(tokenizer).__name__}, not a transformers tokenizer",
                             "pass e.g. AutoTokenizer.from_pretrained(...)")
    device = resolve_device(cfg.model.device)
    model.to(device)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    generation = getattr(model, "generation_config", None)
    if generation is not None and generation.pad_token_id is None:
        generation.pad_token_id = tokenizer.pad_token_id
    if hasattr(model, "set_attn_implementation"):
        model.set_attn_implementation(training_attention(cfg.model.attention, device, cfg.rollout.max_new_tokens))
    return model, tokenizer


# ---- environments -----------------------------------------------------------------------------------------


def environment_overrides(environment: Any) -> list[str]:
    """The `environment` section for groupwise.train(environment=...): a class (TRL's environment_factory; recorded
    by its `module:Class` reference, and found in this process even where no import reaches it), a built-in name,
    or 'file.py:Class' / 'module:Class'."""
    if isinstance(environment, str):
        key = "path" if ":" in environment else "name"
    elif inspect.isclass(environment):
        key, reference = "path", callable_reference(environment)
        give_environment(reference, environment)
        environment = reference
    else:
        raise GroupwiseError(f"environment= is a {type(environment).__name__}",
                             "pass a class (as TRL's environment_factory), a built-in name or 'file.py:Class'")
    other = "name" if key == "path" else "path"
    return [f"environment.{key}={json.dumps(environment)}", f"environment.{other}=null"]
