"""Loading what a run trained: its config, base model and the final adapter (or full model)."""

from __future__ import annotations

from pathlib import Path

from groupwise.config.load import build_config
from groupwise.config.schema import Config
from groupwise.errors import GroupwiseError
from groupwise.models.load import load_configured_model


def is_run_dir(path: str | Path) -> bool:
    return (Path(path) / "config.yaml").is_file()


def load_trained(run_dir: str | Path, overrides: list[str] | None = None, weights: str = "final"):
    """(model, tokenizer, cfg) of a run folder; `weights` is a sub-folder holding the adapter or model."""
    run_dir = Path(run_dir)
    cfg: Config = build_config(run_dir / "config.yaml", overrides or [])
    folder = run_dir / weights
    if not folder.is_dir():
        raise GroupwiseError(f"run folder '{run_dir}' has no '{weights}' weights (did the run finish?)",
                             "train to the end, or resume it with groupwise train --resume")
    model, tokenizer = load_configured_model(cfg)
    if (folder / "adapter_config.json").is_file():
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(folder))
    else:
        from transformers import AutoModelForCausalLM

        model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=model.dtype)
    return model.eval(), tokenizer, cfg
