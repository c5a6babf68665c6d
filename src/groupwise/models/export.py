"""`groupwise export`: a run's trained model as a plain Hugging Face folder, with tokenizer and chat template.

Full fine-tuning runs export the model. LoRA runs export the merged model with `merge=True`, else the
adapter folder: its adapter_config.json points at the base model, a local folder (absolute path) or a
hub id; a base that exists only in memory or as GGUF (tiny-random, smollm2-135m, .gguf) is written next
to the adapter as `base-model/`. Both load with `AutoModelForCausalLM.from_pretrained` (adapters need peft).
Weights are written in float32. `checkpoint=STEP` exports that checkpoint of a full fine-tuning run instead of
`final/`: its weights.safetensors, or the shards that FSDP2 ranks wrote (torch.distributed.checkpoint), gathered
whole in this one process.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from groupwise.config.schema import Config
from groupwise.errors import GroupwiseError
from groupwise.models.load import SMOLLM2, load_configured_model
from groupwise.models.tiny import TINY_RANDOM
from groupwise.models.trained import is_run_dir, load_trained

BASE_FOLDER = "base-model"
EXPORT_DTYPE = "float32"  # even when the run kept its frozen base in bfloat16: no precision lost in the merge


def export_run(run_dir: Path, out: Path, *, merge: bool = False, checkpoint: int | None = None) -> Path:
    """Write run_dir's final model (or checkpoint `checkpoint`) to `out` (written beside it, then renamed)."""
    run_dir, out = Path(run_dir), Path(out)
    if not is_run_dir(run_dir):
        raise GroupwiseError(f"'{run_dir}' is not a run folder (it has no config.yaml)",
                             "give the --run-dir of a finished groupwise train")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise GroupwiseError(f"export folder '{out}' already exists", "choose another --out or remove it")
    weights = "final" if checkpoint is None else f"checkpoint-{checkpoint:06d}"
    model, tokenizer, cfg = load_trained(run_dir, [f"model.dtype={EXPORT_DTYPE}"], weights)  # full precision
    partial = out.with_name(f".{out.name}.partial")
    try:
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
    except OSError as err:
        raise GroupwiseError(f"cannot write to '{out}': {err.strerror}", "choose a writable --out") from err
    if not hasattr(model, "peft_config"):
        model.save_pretrained(partial)
    elif merge:
        model.merge_and_unload().save_pretrained(partial)
    else:
        save_adapter(model, cfg, partial, out)
    tokenizer.save_pretrained(partial)
    give_default_modes(partial)
    if out.exists():
        out.rmdir()
    os.replace(partial, out)
    return out


def give_default_modes(folder: Path) -> None:
    """Every file as an ordinary new file would be (0644 under umask 022): transformers writes the safetensors
    through a private temporary file (0600), which other users of a shared model folder could not read."""
    umask = os.umask(0)
    os.umask(umask)
    for path in folder.rglob("*"):
        if path.is_file() and not path.is_symlink():
            path.chmod(0o666 & ~umask)


def save_adapter(model, cfg: Config, folder: Path, final: Path) -> None:
    """The LoRA adapter, its config pointing at a base model that transformers can load."""
    base = base_reference(cfg)
    if base is None:
        plain, _ = load_configured_model(cfg)
        plain.save_pretrained(folder / BASE_FOLDER)
        base = str((final / BASE_FOLDER).resolve())
    for adapter in model.peft_config.values():
        adapter.base_model_name_or_path = base
    model.save_pretrained(folder)


def base_reference(cfg: Config) -> str | None:
    """Where the base model can be loaded from by others: a local HF folder or a hub id; None otherwise."""
    name = cfg.model.name
    if name in (TINY_RANDOM, SMOLLM2) or name.endswith(".gguf") or cfg.model.gguf_file:
        return None
    path = Path(name)
    return str(path.resolve()) if path.exists() else name
