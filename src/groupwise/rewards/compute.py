"""Scoring a batch: every configured reward function in parallel, combined by weight, errors handled by policy."""

from __future__ import annotations

import asyncio
import inspect
import math
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from groupwise.config.schema import RewardSpec
from groupwise.data.tasks.catalog import task_rewards
from groupwise.errors import GroupwiseError
from groupwise.rewards.catalog import factory_parameters, resolve_reward
from groupwise.rewards.registry import RewardFn
from groupwise.rewards.values import RewardValues


@dataclass
class RewardFunction:
    name: str
    fn: RewardFn
    weight: float
    trl_inputs: bool = False  # user code (a Python callable, module:function): called with TRL's inputs


def trl_inputs(prompts: list, completions: list[str], raw_prompts: list | None,
               conversations: list[list[dict]] | None = None) -> tuple[list, list]:
    """What TRL hands a reward function: each row's own prompt (a string, or a list of messages) and, for a
    conversational prompt, each completion as [{"role": "assistant", "content": text}]; an episode's completion
    is its `conversations` entry, every message after the prompt (assistant turns, tool results)."""
    if conversations is not None:
        return (prompts if raw_prompts is None else raw_prompts), conversations
    if raw_prompts is None:
        return prompts, completions
    shaped = [[{"role": "assistant", "content": c}] if isinstance(p, list) else c
              for p, c in zip(raw_prompts, completions, strict=True)]
    return raw_prompts, shaped


@dataclass
class Scores:
    per_function: Tensor  # [N, F] with NaN where a function returned None
    total: Tensor  # [N] weighted sum over the functions that scored the sample; NaN if none did
    names: list[str]
    errors: dict[str, int] = field(default_factory=dict)
    diagnostics: dict[str, Tensor] = field(default_factory=dict)  # "<function>/<name>" -> [N], NaN: not scored


def build_reward_functions(specs: Sequence[Any], sandbox: dict[str, Any] | None = None) -> list[RewardFunction]:
    """Resolve config entries (name, weight, params) into callables; `sandbox` reaches factories that take it."""
    functions = []
    for spec in specs:
        params = dict(spec.params)
        if ":" not in spec.name:
            factory_params = factory_parameters(spec.name)
            if "sandbox" in factory_params and "sandbox" not in params:
                params["sandbox"] = sandbox
        functions.append(RewardFunction(_unique(spec.name, functions), resolve_reward(spec.name, params),
                                        spec.weight, trl_inputs=":" in spec.name))
    return functions


FILE_DATA_REWARDS = [{"name": "answer_match"}]  # a data file with an `answer` column, unless told otherwise


def default_reward_specs(data: Any) -> list[Any]:
    """The rewards used when the config names none: the built-in task's own, answer_match for data files."""
    entries = task_rewards(data.task) if data.path is None else FILE_DATA_REWARDS
    return [RewardSpec(**entry) for entry in entries]


def with_named_rewards(cfg: Any) -> Any:
    """The config as it runs, `rewards.functions` spelled out (the run's config.yaml, `groupwise config`)."""
    if cfg.rewards.functions is not None:
        return cfg
    named = cfg.rewards.model_copy(update={"functions": default_reward_specs(cfg.data)})
    return cfg.model_copy(update={"rewards": named})


def configured_reward_specs(cfg: Any) -> list[Any]:
    """The reward entries the run uses: `rewards.functions`, else the built-in task's own (answer_match for files)."""
    return list(cfg.rewards.functions) if cfg.rewards.functions is not None else default_reward_specs(cfg.data)


def configured_rewards(cfg: Any) -> list[RewardFunction]:
    """The run's reward functions, built from `configured_reward_specs`."""
    return build_reward_functions(configured_reward_specs(cfg), cfg.sandbox.model_dump())


def _unique(name: str, existing: list[RewardFunction]) -> str:
    short = name.rsplit(":", 1)[-1]
    taken = {f.name for f in existing}
    return short if short not in taken else f"{short}_{len(existing)}"


def _call(fn: RewardFn, prompts, completions, completion_ids, columns) -> list[float | None]:
    result = fn(prompts=prompts, completions=completions, completion_ids=completion_ids, **columns)
    if inspect.isawaitable(result):
        result = asyncio.run(_await(result))
    return result if isinstance(result, RewardValues) else list(result)


async def _await(awaitable):
    return await awaitable


def _checked(name: str, values: list, n: int) -> list[float]:
    if len(values) != n:
        raise GroupwiseError(f"reward '{name}' returned {len(values)} values for {n} completions",
                             "return one float (or None) per completion")
    out = []
    for v in values:
        if v is None:
            out.append(math.nan)
        elif isinstance(v, int | float) and not isinstance(v, bool) or hasattr(v, "__float__"):
            out.append(float(v))
        else:
            raise GroupwiseError(f"reward '{name}' returned {type(v).__name__} {v!r}",
                                 "return a float or None per completion")
    return out


def _locate_failure(fn: RewardFn, prompts, completions, completion_ids, columns) -> tuple[int, Exception]:
    """Re-run sample by sample to name the first sample that makes the function raise."""
    for i in range(len(completions)):
        try:
            _call(fn, prompts[i:i + 1], completions[i:i + 1],
                  completion_ids[i:i + 1] if completion_ids is not None else None,
                  {k: v[i:i + 1] for k, v in columns.items()})
        except Exception as err:  # noqa: BLE001 - user code
            return i, err
    return -1, RuntimeError("fails only on the whole batch")


def score_batch(functions: list[RewardFunction], prompts: list, completions: list[str],
                completion_ids: list[list[int]] | None, columns: dict[str, list], *, workers: int = 4,
                timeout_s: float = 30.0, on_error: str = "raise", raw_prompts: list | None = None,
                conversations: list[list[dict]] | None = None) -> Scores:
    """Score N completions with every function (in parallel); columns are aligned with completions.

    Built-ins get the rendered prompt texts; user functions (``trl_inputs``) get ``raw_prompts``, the rows'
    own prompts, as TRL passes them, and an episode's messages as its completion (`conversations`).
    """
    n = len(completions)
    table = torch.full((n, len(functions)), math.nan)
    errors: dict[str, int] = {}
    diagnostics: dict[str, Tensor] = {}
    user_inputs = trl_inputs(prompts, completions, raw_prompts, conversations)
    row_prompts = raw_prompts if raw_prompts is not None else prompts  # for a built-in that reads them (code_tests)
    inputs = [user_inputs if f.trl_inputs else (row_prompts if getattr(f.fn, "row_prompts", False) else prompts,
                                                completions) for f in functions]
    pool = ThreadPoolExecutor(max_workers=max(1, min(workers, len(functions))))
    try:
        futures = [pool.submit(_call, f.fn, p, c, completion_ids, columns)
                   for f, (p, c) in zip(functions, inputs, strict=True)]
        for j, (f, future, (p, c)) in enumerate(zip(functions, futures, inputs, strict=True)):
            try:
                values = future.result(timeout=timeout_s)
                table[:, j] = torch.tensor(_checked(f.name, values, n))
                diagnostics |= _diagnostics(f.name, values, n)
            except GroupwiseError:
                raise
            except FutureTimeout:
                _handle(f.name, None, f"took longer than {timeout_s:g}s", on_error, errors, n)
                table[:, j] = 0.0
            except Exception:  # noqa: BLE001 - user code: locate, then raise one clear line or count
                index, err = _locate_failure(f.fn, p, c, completion_ids, columns)
                _handle(f.name, index, f"{type(err).__name__}: {err}", on_error, errors, 1 if index >= 0 else n)
                table[:, j] = _per_sample_or_zero(f.fn, p, c, completion_ids, columns)
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
    weights = torch.tensor([f.weight for f in functions])
    scored = ~torch.isnan(table)
    total = torch.where(scored, table * weights, 0.0).sum(-1)
    total = torch.where(scored.any(-1), total, math.nan)
    return Scores(table, total, [f.name for f in functions], errors, diagnostics)


def _diagnostics(name: str, values: list, n: int) -> dict[str, Tensor]:
    """A function's per-sample diagnostics (``RewardValues``) as NaN-padded columns, keyed "<name>/<key>"."""
    out = {}
    for key, column in getattr(values, "diagnostics", {}).items():
        if len(column) == n:
            out[f"{name}/{key}"] = torch.tensor([math.nan if v is None else float(v) for v in column])
    return out


def _handle(name: str, index: int | None, what: str, on_error: str, errors: dict[str, int], count: int) -> None:
    where = f" on sample {index}" if index is not None and index >= 0 else ""
    if on_error == "raise":
        raise GroupwiseError(f"reward function '{name}' failed{where}: {what}",
                             "fix the function, or set rewards.on_error: zero to score failures as 0")
    errors[name] = errors.get(name, 0) + count


def _per_sample_or_zero(fn, prompts, completions, completion_ids, columns) -> Tensor:
    values = []
    for i in range(len(completions)):
        try:
            value = _call(fn, prompts[i:i + 1], completions[i:i + 1],
                          completion_ids[i:i + 1] if completion_ids is not None else None,
                          {k: v[i:i + 1] for k, v in columns.items()})[0]
            values.append(math.nan if value is None else float(value))
        except Exception:  # noqa: BLE001 - counted by the caller
            values.append(0.0)
    return torch.tensor(values)
