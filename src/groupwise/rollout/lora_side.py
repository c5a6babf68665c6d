"""LoRA deltas kept beside a low-precision sampler copy instead of merged into it.

Merging W + s*B*A into bfloat16 weights rounds the delta away: bf16 keeps 8 significant bits, so a delta below
half a unit in the last place of W is lost, the same elements on every token. After 20 steps of the default job
85% of the delta's elements were lost that way and the sampler decoded from a policy behind the trainer's
(2026-12-02). The trainer never merges: under bf16 autocast it computes W x and B(A x) apart and adds the
outputs. `LoraSidePaths` does the same in the copy: each adapted layer gets a forward hook adding
(x A^T)(s B)^T, in the copy's dtype, to the frozen layer's output.
"""

from __future__ import annotations

import torch
from torch import Tensor

from groupwise.runtime.distributed import full_tensor


def lora_modules(model: torch.nn.Module) -> dict[str, torch.nn.Module]:
    """The model's peft LoRA layers by module name (none for a model without an adapter)."""
    from peft.tuners.lora import LoraLayer

    return {name: m for name, m in model.named_modules() if isinstance(m, LoraLayer)}


def plain_name(peft_name: str) -> str:
    """A peft module or parameter name as the plain model names it (no wrapper prefix, no base_layer)."""
    return peft_name.removeprefix("base_model.model.").replace(".base_layer", "")


def plain_lora(layer: torch.nn.Module) -> bool:
    """A peft LoRA layer whose delta is s * B @ A of two linear maps (not DoRA, not an embedding)."""
    adapter = layer.active_adapters[0]
    return (adapter in getattr(layer, "lora_A", {}) and not getattr(layer, "use_dora", {}).get(adapter, False)
            and isinstance(layer.lora_A[adapter], torch.nn.Linear))


class LoraSidePaths:
    """Forward hooks on the copy's adapted layers: output + (x A^T)(s B)^T; `load` copies A and s*B in."""

    def __init__(self, targets: dict[str, torch.nn.Module], lora: dict[str, torch.nn.Module],
                 dtype: torch.dtype) -> None:
        """`targets`: the copy's module for each peft layer name in `lora`."""
        self.factors: dict[str, tuple[Tensor, Tensor]] = {}
        for name, layer in lora.items():
            adapter, module = layer.active_adapters[0], targets[name]
            a, b = layer.lora_A[adapter].weight, layer.lora_B[adapter].weight
            device = next(module.parameters()).device
            self.factors[name] = (torch.zeros(a.shape, dtype=dtype, device=device),
                                  torch.zeros(b.shape, dtype=dtype, device=device))
            module.register_forward_hook(self._hook(*self.factors[name]))

    @staticmethod
    def _hook(a: Tensor, b: Tensor):
        def add_delta(module: torch.nn.Module, args: tuple[Tensor, ...], output: Tensor) -> Tensor:
            return output + torch.nn.functional.linear(torch.nn.functional.linear(args[0], a), b)
        return add_delta

    @torch.no_grad()
    def load(self, lora: dict[str, torch.nn.Module]) -> None:
        for name, (a, b) in self.factors.items():
            layer = lora[name]
            adapter = layer.active_adapters[0]
            a.copy_(full_tensor(layer.lora_A[adapter].weight))
            b.copy_(full_tensor(layer.lora_B[adapter].weight) * layer.scaling[adapter])
