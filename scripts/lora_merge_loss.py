"""How much of a trained LoRA adapter survives a merge into bfloat16 weights, bf16(W + s B A) - W against s B A.

Usage: python scripts/lora_merge_loss.py RUN_DIR   (a LoRA run folder with final/)
docs/training-health.md has what it found: why the bf16 sampler copy keeps adapters beside its weights.
"""
import sys

import torch

from groupwise.models.trained import load_trained
from groupwise.rollout.lora_side import lora_modules


def main(run_dir: str) -> None:
    model, _, _ = load_trained(run_dir)
    errors, lost, elements = [], 0, 0
    for layer in lora_modules(model).values():
        w = layer.base_layer.weight.to(torch.bfloat16).float()
        delta = layer.get_delta_weight(layer.active_adapters[0]).float()
        applied = (w + delta).to(torch.bfloat16).float() - w  # what a merged bf16 copy holds of the delta
        errors.append(((applied - delta).norm() / delta.norm()).item())
        lost += int(((applied == 0) & (delta != 0)).sum())
        elements += delta.numel()
    errors.sort()
    print(f"{len(errors)} adapted layers: relative error of the merged delta median {errors[len(errors) // 2]:.3f}, "
          f"max {errors[-1]:.3f}; delta elements rounded away entirely {100 * lost / elements:.1f}%")


if __name__ == "__main__":
    main(sys.argv[1])
