"""groupwise from Python: `train`, `evaluate` and `select`, the same code paths as the CLI's commands.

    import groupwise
    run = groupwise.train(None, ["train.steps=10"], dataset=rows, rewards=[my_reward, "answer_match"])
    result = groupwise.evaluate(run, samples=16, k=[1, 4, 16])
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from groupwise.api.inputs import (
    RewardItem,
    as_rows,
    build_rewards,
    dataset_overrides,
    environment_overrides,
    prepare_model,
    write_rows,
)
from groupwise.config.load import build_config, config_from_mapping, dump_config
from groupwise.config.schema import Config
from groupwise.errors import GroupwiseError
from groupwise.rewards.compute import RewardFunction
from groupwise.runtime.quiet import library_warnings_hidden

ConfigLike = Config | dict[str, Any] | str | Path | None
StepCallback = Callable[[int, dict[str, Any]], Any]


@dataclass
class Run:
    """A finished (or cleanly stopped) training run."""

    summary: dict[str, Any]  # what run_dir/summary.json holds
    run_dir: Path
    model: Any  # the trained policy (a peft model when LoRA is on)
    tokenizer: Any
    config: Config
    rewards: list[RewardFunction] = field(default_factory=list)


def resolve_config(config: ConfigLike = None, overrides: Sequence[str] = ()) -> Config:
    """A Config from None (the embedded default job), a YAML path, a dict of sections or a Config, then --set
    style `overrides`."""
    overrides = _override_list(overrides)
    if config is None or isinstance(config, str | Path):
        return build_config(config, overrides)
    if isinstance(config, Config):
        return config.override(overrides)
    if isinstance(config, dict):
        return config_from_mapping(config, overrides)
    raise GroupwiseError(f"config= is a {type(config).__name__}",
                         "pass None, a YAML path, a dict of sections or a groupwise.Config")


@library_warnings_hidden()  # as the CLI hides them: transformers' deprecations are not the user's
def train(config: ConfigLike = None, overrides: Sequence[str] = (), *, dataset: Any = None, heldout: Any = None,
          rewards: Sequence[RewardItem] | None = None, reward_weights: Sequence[float] | None = None,
          model: Any = None, tokenizer: Any = None, run_dir: str | Path | None = None,
          on_step: StepCallback | None = None, overwrite: bool = False, resume: bool = False,
          console: Any = None, environment: Any = None) -> Run:
    """Train with GRPO (or the configured variant) and write a run folder, as `groupwise train` does.

    config: None (the embedded default job), a YAML path, a dict of sections or a groupwise.Config.
    overrides: strings as for --set, e.g. ["train.steps=10", "algorithm.preset=dapo"].
    dataset / heldout: a list of dicts, a datasets.Dataset or a pandas.DataFrame with a `prompt` column
        (a string, or a list of {role, content} messages); they replace data.task / data.path and are saved
        under run_dir/data. Without heldout, data.heldout_fraction of the dataset is kept aside.
    rewards: callables with TRL's signature fn(prompts, completions, completion_ids=None, **columns) -> list
        of float | None (sync or async), built-in reward names, or {"name": ..., "params": ...} entries.
        Callables get TRL's arguments: each row's own prompt and, for conversational rows, completions as
        [{"role": "assistant", "content": ...}]. None: the config's rewards.
    reward_weights: one float per reward (TRL's reward_weights).
    model, tokenizer: an already loaded transformers causal LM and its tokenizer (else model.name is loaded).
    run_dir: the output folder (default runs/run-DATE-TIME); it must be new or empty unless overwrite=True.
    on_step: called as on_step(step, metrics) after each step; returning False stops cleanly after that step
        (checkpoint, final weights and summary are written; summary["stopped_at_step"] says where).
    resume: continue run_dir from its newest intact checkpoint with its own config (overrides as for
        `train --resume`); pass rewards/model again if the run was started with callables or a model object.
    environment: multi-turn episodes (docs/environments.md): a class, step style (reset/step) or tool style (reset
        and typed, documented methods as tools, as TRL's environment_factory); reward functions then also get
        environments= (the instances). Or a built-in name (python_tool, code_feedback), or 'file.py:Class'.
    Returns a Run: .summary (summary.json as a dict), .run_dir, .model (the trained model), .tokenizer.
    """
    from groupwise.train.checkpoint import discard_untrained
    from groupwise.train.inputs import TrainInputs

    if on_step is not None and not callable(on_step):
        raise GroupwiseError(f"on_step= is a {type(on_step).__name__}", "pass a function on_step(step, metrics)")
    if resume:
        cfg, folder, created = _resumed(config, overrides, dataset, heldout, run_dir)
    else:
        from groupwise.train.run_dir import prepare_run_dir

        cfg = resolve_config(config, overrides)
        created = not (run_dir is not None and Path(run_dir).exists())
        folder = prepare_run_dir(Path(run_dir) if run_dir is not None else None, overwrite)
    try:
        cfg = _with_dataset(cfg, dataset, heldout, folder)
        if environment is not None:
            cfg = cfg.override(environment_overrides(environment))
        _check_rows(cfg)
        functions = None
        if rewards is not None:
            functions, entries = build_rewards(rewards, reward_weights, cfg)
            cfg = cfg.override([f"rewards.functions={json.dumps(entries)}"])
        elif reward_weights is not None:
            raise GroupwiseError("reward_weights= needs rewards=", "pass rewards=[...] with one weight each")
        model, tokenizer = _model_for(model, tokenizer, cfg)
        inputs = TrainInputs(rewards=functions, model=model, tokenizer=tokenizer, on_step=on_step)
    except BaseException:
        if not resume:
            discard_untrained(folder, created)
        raise
    summary = run_training(cfg, folder, resume=resume, created=created, console=console, inputs=inputs)
    from groupwise.rewards.compute import configured_rewards

    return Run(summary, folder, inputs.trained_model, tokenizer, cfg,
               functions if functions is not None else configured_rewards(cfg))


def run_training(cfg: Config, folder: Path, *, resume: bool, created: bool = False, console: Any = None,
                 inputs: Any = None) -> dict[str, Any]:
    """The training loop for `train` and the CLI; a failed fresh start leaves no half run behind."""
    from groupwise.train.checkpoint import TrainingInterrupted, discard_untrained
    from groupwise.train.loop import training_loop

    try:
        return training_loop(cfg, folder, console=console, resume=resume, inputs=inputs)
    except TrainingInterrupted:
        raise
    except BaseException:
        from groupwise.runtime.distributed import is_main

        if not resume and is_main():
            discard_untrained(folder, created)
        raise


@library_warnings_hidden()
def evaluate(model: Any, dataset: Any = None, *, rewards: Sequence[RewardItem] | None = None,
             reward_weights: Sequence[float] | None = None, tokenizer: Any = None, config: ConfigLike = None,
             overrides: Sequence[str] = (), samples: int | None = None, k: Sequence[int] | None = None,
             problems: int | None = None, out: str | Path | None = None, console: Any = None) -> dict[str, Any]:
    """Greedy accuracy, unbiased pass@k and mean reward per function, as `groupwise eval` computes them.

    model: a Run, a run folder, a model name/path (smollm2-135m, a folder, a .gguf), or a loaded transformers
        model (then tokenizer= too).
    dataset: problems to evaluate on (list of dicts, datasets.Dataset or pandas.DataFrame); default: the held-out
        split of the run's (or config's) data.
    rewards / reward_weights: as for `train`; default: the run's rewards, else the config's.
    samples: sampled completions per problem (default: the largest k, else eval.samples); k: the pass@k to
        report, each <= samples (default 1, 8, 64 where <= samples).
    Returns the dict `groupwise eval` writes as summary.json: "greedy_accuracy", "pass@K" for each k, ...
    """
    from groupwise.evaluate.data_option import base_config, data_overrides
    from groupwise.evaluate.heldout_eval import DEFAULT_KS, parse_ks, usable_ks
    from groupwise.evaluate.jobs import load_for_eval, run_eval

    overrides = _override_list(overrides)
    ks = _ks(k)
    with tempfile.TemporaryDirectory(prefix="groupwise-eval-") as tmp:
        config_path = _config_file(config, Path(tmp))
        label, preloaded, run_rewards = _eval_model(model, tokenizer)
        if dataset is not None:
            data_file = write_rows(as_rows(dataset, "dataset"), Path(tmp) / "heldout.jsonl", "dataset")
            overrides += data_overrides(str(data_file), build_config(config_path, overrides), "heldout")
        cfg = base_config(label, config_path, overrides)
        samples = (max(ks) if ks else cfg.eval.samples) if samples is None else samples
        if ks and max(ks) > samples:
            raise GroupwiseError(f"pass@{max(ks)} needs at least {max(ks)} samples per problem, got {samples}",
                                 f"pass samples={max(ks)} or more, or smaller k")
        ks = ks or usable_ks(parse_ks(DEFAULT_KS), samples)
        if preloaded is None:
            loaded, loaded_tokenizer, _ = load_for_eval(label, config_path, overrides)
            preloaded = (loaded, loaded_tokenizer)
        else:
            preloaded = prepare_model(preloaded[0], preloaded[1], cfg)
        functions = _eval_rewards(rewards, reward_weights, run_rewards, cfg)
        result = run_eval(label, config_path, overrides, problems=problems, samples=samples, ks=ks,
                          out=Path(out) if out is not None else None, console=console,
                          preloaded=(preloaded[0].eval(), preloaded[1]), rewards=functions)
    return result["summary"]


@library_warnings_hidden()
def select(dataset: Any = None, *, out: str | Path, keep: str = "hardest:0.1", samples: int = 8,
           model: str | None = None, config: ConfigLike = None, overrides: Sequence[str] = (),
           difficulty: str | Path | None = None, seed: int = 0, console: Any = None) -> dict[str, Any]:
    """Estimate each example's pass rate with the base model and keep a slice, as `groupwise select` does.

    dataset: a built-in task name, a data file, or rows (list of dicts, datasets.Dataset, pandas.DataFrame);
        default: the config's training data. keep: hardest:0.1 | easiest:0.1 | middle:0.1 | random:0.1 |
        learnable (an amount > 1 is a count). out: the JSONL written with the kept rows and their pass_rate.
    Returns what the command prints: rows, kept, learnable_share, mean_pass_rate, histogram, ...
    """
    from groupwise.evaluate.jobs import run_select

    out = Path(out)
    with tempfile.TemporaryDirectory(prefix="groupwise-select-") as tmp:
        data = dataset
        if dataset is not None and not isinstance(dataset, str | Path):
            data = write_rows(as_rows(dataset, "dataset"), Path(tmp) / "dataset.jsonl", "dataset")
            difficulty = difficulty or out.parent / f"{out.stem}.difficulty.jsonl"
        return run_select(str(data) if data is not None else None, keep, out, samples=samples, model=model,
                          config=_config_file(config, Path(tmp)), overrides=_override_list(overrides),
                          difficulty=Path(difficulty) if difficulty else None, seed=seed, console=console)


# ---- helpers ----------------------------------------------------------------------------------------------


def _override_list(overrides: Sequence[str]) -> list[str]:
    if isinstance(overrides, str) or not all(isinstance(item, str) for item in overrides):
        raise GroupwiseError(f"overrides= must be a list of 'section.key=value' strings, got {overrides!r}",
                             "write e.g. overrides=['train.steps=10']")
    return list(overrides)


def _ks(k: Sequence[int] | None) -> list[int]:
    if k is None:
        return []
    if isinstance(k, int):
        k = [k]
    if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in k) or not k:
        raise GroupwiseError(f"k= must be integers >= 1, got {k!r}", "write e.g. k=[1, 4, 16]")
    return sorted(set(k))


def _config_file(config: ConfigLike, folder: Path) -> Path | None:
    """The config as a YAML path for the commands' code (a dict or Config is written, fully resolved)."""
    if config is None or isinstance(config, str | Path):
        return Path(config) if config is not None else None
    path = folder / "config.yaml"
    path.write_text(dump_config(resolve_config(config)))
    return path


def _resumed(config, overrides, dataset, heldout, run_dir) -> tuple[Config, Path, bool]:
    from groupwise.train.checkpoint import resume_config

    if run_dir is None:
        raise GroupwiseError("resume=True needs run_dir=", "pass the folder of the run to continue")
    if config is not None or dataset is not None or heldout is not None:
        raise GroupwiseError("resume=True continues a run with the config and data saved in its folder",
                             "drop config=, dataset= and heldout=")
    return resume_config(Path(run_dir), _override_list(overrides)), Path(run_dir), False


def _with_dataset(cfg: Config, dataset: Any, heldout: Any, folder: Path) -> Config:
    if dataset is None:
        if heldout is not None:
            raise GroupwiseError("heldout= needs dataset=", "pass the training rows as dataset= too")
        return cfg
    train_file = write_rows(as_rows(dataset, "dataset"), folder / "data" / "train.jsonl", "dataset")
    heldout_file = (write_rows(as_rows(heldout, "heldout"), folder / "data" / "heldout.jsonl", "heldout")
                    if heldout is not None else None)
    return cfg.override(dataset_overrides(train_file.resolve(), heldout_file.resolve() if heldout_file else None))


def _check_rows(cfg: Config) -> list[dict[str, Any]]:
    """Training and held-out rows, loaded (and checked) before any model loads."""
    from groupwise.data.source import load_rows

    rows = load_rows(cfg.data, "train")
    if cfg.eval.before_after or cfg.eval.every > 0:
        rows = rows + load_rows(cfg.data, "heldout")
    return rows


def _model_for(model: Any, tokenizer: Any, cfg: Config) -> tuple[Any, Any]:
    from groupwise.models.load import load_configured_model

    if model is None:
        if tokenizer is not None:
            raise GroupwiseError("tokenizer= was given without model=", "pass model= too, or neither")
        return load_configured_model(cfg)
    return prepare_model(model, tokenizer, cfg)


def _eval_model(model: Any, tokenizer: Any) -> tuple[str, tuple[Any, Any] | None, list[RewardFunction] | None]:
    """(label for the results, a preloaded (model, tokenizer) or None, the run's reward functions)."""
    if isinstance(model, Run):
        return str(model.run_dir), (model.model, model.tokenizer), model.rewards
    if isinstance(model, str | Path):
        if tokenizer is not None:
            raise GroupwiseError("tokenizer= goes with a loaded model object, not a name or folder",
                                 "drop tokenizer=")
        return str(model), None, None
    if model is None:
        raise GroupwiseError("evaluate() needs a model", "pass a Run, a run folder, a model name or a model object")
    return getattr(model, "name_or_path", "") or "model", (model, tokenizer), None


def _eval_rewards(rewards, weights, run_rewards, cfg: Config) -> list[RewardFunction] | None:
    if rewards is not None:
        return build_rewards(rewards, weights, cfg)[0]
    if weights is not None:
        raise GroupwiseError("reward_weights= needs rewards=", "pass rewards=[...] with one weight each")
    if not run_rewards:
        return None
    return list(run_rewards)
