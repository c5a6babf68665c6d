"""Loading what `groupwise eval` evaluates: a run folder (base + trained weights) or a model by name."""

from __future__ import annotations

from pathlib import Path

from groupwise.config.load import build_config
from groupwise.models.load import load_configured_model
from groupwise.models.trained import is_run_dir, load_trained


def load_for_eval(model: str, config: Path | None, overrides: list[str]):
    if is_run_dir(model):
        return load_trained(model, overrides)
    cfg = build_config(config, overrides + [f"model.name={model}"])
    loaded, tokenizer = load_configured_model(cfg)
    return loaded.eval(), tokenizer, cfg

