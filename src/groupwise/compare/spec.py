"""The experiment file of `groupwise compare`: a base config, seeds, variants (config overrides) and the
evaluation settings, checked with one clear error per mistake; and the config of each cell (variant x seed)."""

from __future__ import annotations

import copy
import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from groupwise.config.load import config_from_mapping, deep_merge, read_yaml
from groupwise.config.paths import anchor_paths, file_rule
from groupwise.config.schema import Config
from groupwise.errors import GroupwiseError
from groupwise.runtime.cores import split_cores

TOP_KEYS = ("base", "seeds", "variants", "eval", "baseline")
EVAL_KEYS = ("problems", "samples", "k", "bootstrap")
SELECT_KEYS = ("keep", "samples", "seed")
SECTIONS = tuple(Config.model_fields)
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
SET_BY_COMPARE = {("train", "seed"), ("data", "order_seed"), ("train", "threads")}


@dataclass(frozen=True)
class EvalSettings:
    problems: int = 200
    samples: int = 16
    ks: tuple[int, ...] = (1, 4, 16)
    bootstrap: int = 2000  # bootstrap replicates of every interval


@dataclass(frozen=True)
class Variant:
    name: str
    overrides: dict[str, Any]  # config sections, as in a YAML file
    select: dict[str, Any] | None = None  # train on a `groupwise select` slice: {keep, samples, seed}


@dataclass
class Experiment:
    base: dict[str, Any]  # the shared config mapping
    seeds: list[int]
    variants: list[Variant]
    eval: EvalSettings
    baseline: str
    source: Path | None = None
    notes: list[str] = field(default_factory=list)
    path_rules: dict[str, str] = field(default_factory=dict)  # how the relative paths in the files were resolved

    def variant(self, name: str) -> Variant:
        return next(v for v in self.variants if v.name == name)


def _fail(path: Path | None, problem: str, fix: str) -> GroupwiseError:
    where = f"experiment '{path}': " if path else "experiment: "
    return GroupwiseError(where + problem, fix)


def load_experiment(path: Path) -> Experiment:
    """Read and check EXPERIMENT.yaml; `base: other.yaml` is read relative to it."""
    path = Path(path)
    raw = read_yaml(path)
    return parse_experiment(raw, path)


def parse_experiment(raw: dict[str, Any], path: Path | None = None) -> Experiment:
    unknown = sorted(set(raw) - set(TOP_KEYS))
    if unknown:
        raise _fail(path, f"unknown key '{unknown[0]}'", f"use only {', '.join(TOP_KEYS)}")
    base, rules = _base(raw.get("base"), path)
    seeds = raw.get("seeds")
    if not isinstance(seeds, list) or not seeds:
        raise _fail(path, "seeds must be a non-empty list of integers", "write e.g. seeds: [0, 1, 2]")
    if not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds) or len(set(seeds)) < len(
            seeds):
        raise _fail(path, f"seeds {seeds} must be distinct integers >= 0", "write e.g. seeds: [0, 1, 2]")
    variants = _variants(raw.get("variants"), path)
    variants = [_anchored(v, path, rules) for v in variants]
    baseline = raw.get("baseline", variants[0].name)
    if baseline not in [v.name for v in variants]:
        raise _fail(path, f"baseline '{baseline}' is not among the variants",
                    f"name one of {', '.join(v.name for v in variants)}")
    experiment = Experiment(base, list(seeds), variants, _eval(raw.get("eval"), path), baseline, path,
                            path_rules=rules)
    for variant in variants:  # every cell's config must validate before anything trains
        try:
            cell_config(experiment, variant, seeds[0], threads=1)
        except GroupwiseError as err:
            raise _fail(path, f"variant '{variant.name}': {err.problem}", err.fix) from None
    return experiment


def _base(base: Any, path: Path | None) -> tuple[dict[str, Any], dict[str, str]]:
    """The base mapping, its relative paths made absolute against the folder of the file that holds them (the
    experiment file, or `base: job.yaml`); and how each was resolved."""
    if base is None:
        return {}, {}
    if isinstance(base, str):
        file = Path(base) if Path(base).is_absolute() or path is None else path.parent / base
        return anchor_paths(read_yaml(file), file.parent, file_rule(file))
    if not isinstance(base, dict):
        raise _fail(path, "base must be a config mapping or the path of a YAML config",
                    "write base: {model: {name: smollm2-135m}, ...} or base: job.yaml")
    return _anchored_to(base, path)


def _anchored_to(mapping: dict[str, Any], path: Path | None) -> tuple[dict[str, Any], dict[str, str]]:
    """`mapping` from the experiment file at `path`: its relative paths start at that file's folder."""
    if path is None:
        return mapping, {}
    return anchor_paths(mapping, path.parent, file_rule(path))


def _anchored(variant: Variant, path: Path | None, rules: dict[str, str]) -> Variant:
    """`variant` with its paths absolute; `rules` learns how they were resolved."""
    overrides, more = _anchored_to(variant.overrides, path)
    rules.update(more)
    return Variant(variant.name, overrides, variant.select)


def _variants(variants: Any, path: Path | None) -> list[Variant]:
    if not isinstance(variants, dict) or not variants:
        raise _fail(path, "variants must be a non-empty mapping name -> config overrides",
                    "write e.g. variants: {grpo: {}, f_grpo: {algorithm: {focal_gamma: 1.0}}}")
    out = []
    for name, overrides in variants.items():
        if not isinstance(name, str) or not NAME.match(name) or name == "base":
            raise _fail(path, f"variant name '{name}' is not a plain folder name (or is 'base', the base "
                        "model's row)", "use letters, digits, '_', '-' and '.'")
        overrides = {} if overrides is None else overrides
        if not isinstance(overrides, dict):
            raise _fail(path, f"variant '{name}' must be a mapping of config sections",
                        "write e.g. f_grpo: {algorithm: {focal_gamma: 1.0}}")
        overrides = copy.deepcopy(overrides)
        select = overrides.pop("select", None)
        bad = sorted(set(overrides) - set(SECTIONS))
        if bad:
            raise _fail(path, f"variant '{name}': unknown key '{bad[0]}'",
                        f"use config sections ({', '.join(SECTIONS)}) or select")
        for section, key in SET_BY_COMPARE:
            if isinstance(overrides.get(section), dict) and key in overrides[section]:
                raise _fail(path, f"variant '{name}' sets {section}.{key}, which compare sets for each cell",
                            "drop it (seeds: sets train.seed and data.order_seed; --parallel: train.threads)")
        out.append(Variant(name, overrides, _select(select, name, path)))
    return out


def _select(select: Any, name: str, path: Path | None) -> dict[str, Any] | None:
    if select is None:
        return None
    if not isinstance(select, dict) or "keep" not in select or set(select) - set(SELECT_KEYS):
        raise _fail(path, f"variant '{name}': select must be a mapping with keep (and samples, seed)",
                    "write e.g. select: {keep: 'hardest:0.1', samples: 16}")
    from groupwise.evaluate.selection import parse_strategy

    parse_strategy(str(select["keep"]))
    samples = select.get("samples", 8)
    if not isinstance(samples, int) or samples < 1:
        raise _fail(path, f"variant '{name}': select.samples must be an integer >= 1", "write e.g. samples: 16")
    return {"keep": str(select["keep"]), "samples": samples, "seed": int(select.get("seed", 0))}


def _eval(section: Any, path: Path | None) -> EvalSettings:
    section = {} if section is None else section
    if not isinstance(section, dict) or set(section) - set(EVAL_KEYS):
        raise _fail(path, f"eval must be a mapping of {', '.join(EVAL_KEYS)}",
                    "write e.g. eval: {problems: 200, samples: 16, k: [1, 4, 16]}")
    defaults = EvalSettings()
    problems, samples = section.get("problems", defaults.problems), section.get("samples", defaults.samples)
    ks, replicates = section.get("k", list(defaults.ks)), section.get("bootstrap", defaults.bootstrap)
    for key, value, low in (("problems", problems, 1), ("samples", samples, 0), ("bootstrap", replicates, 100)):
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            raise _fail(path, f"eval.{key} must be an integer >= {low}, got {value!r}", f"fix eval.{key}")
    ks = [ks] if isinstance(ks, int) else ks
    if not isinstance(ks, list) or not all(isinstance(k, int) and k >= 1 for k in ks):
        raise _fail(path, f"eval.k must be a list of integers >= 1, got {ks!r}", "write e.g. k: [1, 4, 16]")
    if ks and max(ks) > samples:
        raise _fail(path, f"pass@{max(ks)} needs eval.samples >= {max(ks)}, got {samples}",
                    f"raise eval.samples to {max(ks)} or drop the larger k")
    return EvalSettings(problems, samples, tuple(sorted(set(ks))), replicates)


def cell_mapping(experiment: Experiment, variant: Variant, seed: int, *, threads: int,
                 extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The cell's config mapping: base < variant < what compare sets (seed, threads, no own evaluation) <
    `extra` sections (a select variant's slice as the training file)."""
    mapping = deep_merge(experiment.base, variant.overrides)
    mapping = deep_merge(mapping, {"train": {"seed": seed}, "data": {"order_seed": seed},
                                   "eval": {"before_after": False}})
    mapping = deep_merge(mapping, cell_threads(mapping, threads))
    return deep_merge(mapping, extra) if extra else mapping


def cell_threads(mapping: dict[str, Any], threads: int) -> dict[str, Any]:
    """The cell's share of the cores: the trainer's, or split between the rollout producer and the trainer."""
    if not (mapping.get("rollout") or {}).get("max_staleness"):
        return {"train": {"threads": threads}}
    producer, trainer = split_cores(threads)
    return {"rollout": {"threads": producer}, "train": {"threads": trainer}}


def cell_config(experiment: Experiment, variant: Variant, seed: int, *, threads: int,
                extra: dict[str, Any] | None = None) -> Config:
    return config_from_mapping(cell_mapping(experiment, variant, seed, threads=threads, extra=extra),
                               path_rules=experiment.path_rules)


def base_config(experiment: Experiment) -> Config:
    """The base model's row: the base config as it is (its own train.seed keys the evaluation samples)."""
    return config_from_mapping(experiment.base, path_rules=experiment.path_rules)


def auto_precision(cfg: Config) -> str | None:
    """The kind of machine the config's `auto` precisions resolve on: bfloat16 where it computes bf16 fast, else
    float32 (a model too small for bf16 to pay, `bf16_pays`, stays float32 on either); None when model.dtype,
    rollout.dtype and train.bf16 are all pinned."""
    from groupwise.models.load import resolve_device
    from groupwise.models.precision import fast_bf16

    if "auto" not in (cfg.model.dtype, cfg.rollout.dtype, cfg.train.bf16):
        return None
    return "bfloat16" if fast_bf16(resolve_device(cfg.model.device)) else "float32"


def spec_hash(experiment: Experiment, variant: Variant | None, seed: int | None, precision: str | None) -> str:
    """What makes a cell's results: a rerun with another base, variant or eval, or on a machine where the
    config's `auto` precisions resolve otherwise (`auto_precision`), refuses to reuse them."""
    spec = {"base": experiment.base, "variant": variant and {"overrides": variant.overrides,
                                                             "select": variant.select},
            "seed": seed, "eval": {"problems": experiment.eval.problems, "samples": experiment.eval.samples}}
    if precision is not None:
        spec["precision"] = precision
    return hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()[:16]
