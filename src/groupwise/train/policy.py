"""The trained policy and its reference: LoRA (reference = adapter disabled) or full fine-tuning (frozen copy)."""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from peft import LoraConfig as PeftLoraConfig
from peft import PeftModel, get_peft_model
from peft.helpers import disable_input_dtype_casting
from transformers import PreTrainedModel

from groupwise.config.schema import Config, RolloutConfig
from groupwise.environments.registry import configured_environment
from groupwise.errors import GroupwiseError
from groupwise.models.precision import autocast, resolve_bf16
from groupwise.rollout.completions import Rollout
from groupwise.rollout.sampler import Sampler
from groupwise.train.fsdp import check_sharded_engine, fsdp_training, is_sharded, shard_model
from groupwise.train.meta_init import sharded_copy


@dataclass
class Policy:
    model: PreTrainedModel | PeftModel
    reference: PreTrainedModel | None  # a frozen copy for full fine-tuning with beta > 0; None otherwise
    lora: bool
    sampler: Sampler | None = None  # draws rollouts; refreshed after each update
    bf16: bool = False  # autocast the training passes
    version: int = 0  # optimizer updates so far; the sampler refreshes when it lags behind
    _sampler_version: int = 0
    sharded: bool = False  # full fine-tuning under torchrun: FSDP2 (train/fsdp.py)

    def trainable_parameters(self) -> list[torch.nn.Parameter]:
        return [p for p in self.model.parameters() if p.requires_grad]

    def updated(self) -> None:
        self.version += 1

    def sample(self, tokenizer, texts: list[str], rollout: RolloutConfig, keys: list[int] | None = None,
               rows: list[dict] | None = None) -> Rollout:
        """`rollout.group_size` completions per text from the current weights; `keys`: one stream key per text;
        `rows`: the texts' data rows (an environment's episodes start from them)."""
        self.refresh_sampler()
        return self.sampler(tokenizer, texts, group_size=rollout.group_size, keys=keys, rows=rows)

    def refresh_sampler(self) -> None:
        """Hand the sampler's engine the weights of the last update, if it does not hold them yet."""
        if self._sampler_version != self.version:
            self.sampler.refresh()
            self._sampler_version = self.version

    @contextlib.contextmanager
    def training_precision(self) -> Iterator[None]:
        """The precision of the training passes: bf16 autocast when `bf16`, where LoRA layers hand their bf16
        input straight to the adapter (peft would cast it to float32, and autocast back, twice per layer)."""
        if not self.bf16:
            yield
            return
        keep_input_dtype = disable_input_dtype_casting(self.model) if self.lora else contextlib.nullcontext()
        with autocast(next(self.model.parameters()).device, True), keep_input_dtype:
            yield

    @contextlib.contextmanager
    def as_reference(self) -> Iterator[PreTrainedModel]:
        """The reference model: the same weights with the LoRA adapter switched off, or the frozen copy."""
        if self.lora:
            with self.model.disable_adapter():
                yield self.model
        elif self.reference is not None:
            yield self.reference
        else:
            raise RuntimeError("no reference model: algorithm.beta is 0")


def wrap_policy(model: PreTrainedModel, cfg: Config, sampler: bool = True) -> Policy:
    """Attach a LoRA adapter, or prepare full fine-tuning with a frozen reference copy when beta > 0; with
    `sampler`, the engine that samples from it (an async run's producer builds its own instead)."""
    if cfg.model.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.config.use_cache = True  # generate() keeps its KV cache; the training forward passes use_cache=False
    if cfg.lora.enabled:
        peft_config = PeftLoraConfig(r=cfg.lora.r, lora_alpha=cfg.lora.alpha, lora_dropout=cfg.lora.dropout,
                                     target_modules=cfg.lora.target_modules, task_type="CAUSAL_LM")
        try:
            model = get_peft_model(model, peft_config)
        except ValueError as err:
            raise GroupwiseError(f"cannot apply LoRA: {str(err).splitlines()[0]}",
                                 "check lora.target_modules (e.g. all-linear or q_proj,v_proj)") from err
        if cfg.model.gradient_checkpointing:
            model.enable_input_require_grads()
        return _with_sampler(Policy(model, None, lora=True), cfg, sampler)
    sharded = fsdp_training(cfg)
    reference = None
    if cfg.algorithm.beta > 0 and not sharded:
        reference = copy.deepcopy(model).eval().requires_grad_(False)
    model.requires_grad_(True)
    if sharded:  # FSDP2, the reference sharded the same way (it needs 1/W of its memory on each rank)
        check_sharded_engine(cfg)
        bf16 = resolve_bf16(cfg.train.bf16, model)
        if not is_sharded(model):  # handed in from Python, whole on every rank (the loop's own: meta_init.py)
            model = shard_model(model, bf16)
        if cfg.algorithm.beta > 0:
            reference = sharded_copy(model, bf16).eval().requires_grad_(False)
    return _with_sampler(Policy(model, reference, lora=False, sharded=sharded), cfg, sampler)


def _with_sampler(policy: Policy, cfg: Config, sampler: bool = True) -> Policy:
    policy.bf16 = resolve_bf16(cfg.train.bf16, policy.model)
    if sampler:
        policy.sampler = Sampler(policy.model, cfg.rollout, environment=configured_environment(cfg))
    return policy
