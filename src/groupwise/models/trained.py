"""Loading what a run trained: its config, base model and the final adapter (or full model), or the weights of
one of its full fine-tuning checkpoints (weights.safetensors, or torch.distributed.checkpoint shards)."""

from __future__ import annotations

from pathlib import Path

import torch

from groupwise.config.load import build_config
from groupwise.config.schema import Config
from groupwise.errors import GroupwiseError
from groupwise.models.load import load_configured_model

CHECKPOINT_WEIGHTS = "weights.safetensors"  # a one-process checkpoint's trained weights
DCP_METADATA = ".metadata"  # torch.distributed.checkpoint's index: the folder holds sharded (FSDP2) weights


def is_run_dir(path: str | Path) -> bool:
    return (Path(path) / "config.yaml").is_file()


def load_trained(run_dir: str | Path, overrides: list[str] | None = None, weights: str = "final"):
    """(model, tokenizer, cfg) of a run folder; `weights` is a sub-folder holding the adapter or model, or a
    checkpoint folder (checkpoint-NNNNNN) of a full fine-tuning run."""
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
    elif (folder / DCP_METADATA).is_file() or (folder / CHECKPOINT_WEIGHTS).is_file():
        load_checkpoint_weights(folder, model)
    else:
        from transformers import AutoModelForCausalLM

        model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=model.dtype)
    return model.eval(), tokenizer, cfg


def load_checkpoint_weights(folder: Path, model: torch.nn.Module) -> None:
    """A full fine-tuning checkpoint's weights into `model`, in one process: DCP shards are gathered whole."""
    if (folder / DCP_METADATA).is_file():
        import torch.distributed.checkpoint as dcp
        from torch.distributed.checkpoint.state_dict import get_model_state_dict, set_model_state_dict

        state = {"model": get_model_state_dict(model)}
        dcp.load(state, checkpoint_id=folder, no_dist=True)  # reads only the "model" entries, not the optimizer's
        set_model_state_dict(model, state["model"])
        return
    from safetensors.torch import load_file

    weights = load_file(folder / CHECKPOINT_WEIGHTS)
    if any("lora_" in name for name in weights):
        raise GroupwiseError(f"'{folder}' is a LoRA checkpoint", "export the run's final adapter instead")
    _, unexpected = model.load_state_dict(weights, strict=False)
    if unexpected or {n for n, _ in model.named_parameters()} - set(weights):
        raise GroupwiseError(f"checkpoint '{folder}' does not match the run's model",
                             "export a checkpoint of this run with its own config.yaml")
