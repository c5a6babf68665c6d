"""The policy's weights as a plain Hugging Face checkpoint names them, for an engine that holds its own copy.

With LoRA, each adapted weight is sent merged, W + s*B*A computed in float32 (`merged`), or the frozen W alone
for an engine that applies the adapter itself (`adapter`). A weight sharded by FSDP2 is gathered whole, once per
sync (every rank must iterate, in the same order).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import Tensor

from groupwise.rollout.lora_side import lora_modules, plain_name
from groupwise.runtime.distributed import full_tensor

WEIGHTS_FILE = "model.safetensors"


def plain_weights(policy: torch.nn.Module, merge_lora: bool = True) -> Iterator[tuple[str, Tensor]]:
    """(name, tensor) for every weight of the policy but the LoRA factors, under the plain model's names.

    A tied weight comes under each of its names, as in a checkpoint (`lm_head.weight` beside the embedding):
    vLLM's in-place reload left the whole model wrong when the tied name was missing (2026-12-05)."""
    lora = lora_modules(policy)
    with torch.no_grad():
        for name, param in policy.state_dict(keep_vars=True).items():
            if "lora_" in name or not isinstance(param, torch.nn.Parameter):
                continue
            value = full_tensor(param.detach())
            layer = lora.get(name.removesuffix(".base_layer.weight")) if name.endswith(".base_layer.weight") else None
            if merge_lora and layer is not None:
                value = (value.float() + layer.get_delta_weight(layer.active_adapters[0]).float()).to(value.dtype)
            yield plain_name(name), value


def base_model(policy: torch.nn.Module) -> torch.nn.Module:
    """The transformers model under a peft wrapper (the policy itself without one)."""
    return policy.get_base_model() if hasattr(policy, "get_base_model") else policy


def checkpoint_folder(policy: torch.nn.Module, folder: Path, merge_lora: bool = True) -> Path:
    """A folder vLLM can start from: the model's own (a local Hugging Face folder with config.json and safetensors,
    e.g. groupwise's dequantized GGUF cache), else `folder` with the policy's weights written into it. Either way
    the engine loads the policy's current weights right after it starts."""
    source = Path(getattr(base_model(policy), "name_or_path", "") or "")
    if (source / "config.json").is_file() and any(source.glob("*.safetensors")):
        return source
    return save_checkpoint_folder(policy, folder, merge_lora)


def save_checkpoint_folder(policy: torch.nn.Module, folder: Path, merge_lora: bool = True) -> Path:
    """A folder vLLM can load: the model's config.json and its weights in one safetensors file."""
    folder.mkdir(parents=True, exist_ok=True)
    config = base_model(policy).config.to_dict()
    config.pop("quantization_config", None)  # a GGUF's dequantized weights are plain tensors now
    (folder / "config.json").write_text(json.dumps(config, indent=1))
    save_weights(plain_weights(policy, merge_lora), folder / WEIGHTS_FILE)
    return folder


def save_weights(weights: Iterator[tuple[str, Tensor]], path: Path) -> None:
    """Weights into one safetensors file, written beside and renamed (a reader never sees half a file)."""
    partial = path.with_name(f".{path.name}.partial")
    tensors, seen = {}, set()
    for name, value in weights:
        value = value.detach().cpu().contiguous()
        tensors[name] = value.clone() if value.data_ptr() in seen else value  # a tied weight is stored twice
        seen.add(value.data_ptr())
    save_file(tensors, str(partial))
    partial.replace(path)


def lora_rank(policy: torch.nn.Module) -> int | None:
    """The policy's LoRA rank (None without an adapter)."""
    config = getattr(policy, "peft_config", {}).get("default")
    return int(config.r) if config is not None else None
