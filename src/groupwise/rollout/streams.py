"""Random streams that belong to a completion, not to a process: counter-based uniforms from a per-row key.

A sampled completion draws its t-th token with the uniform `counter_uniforms(key, t)`, where `key` is mixed
from (seed, step, sampling round, the prompt's index in the round's global batch, sample index). Nothing else
enters: not the rank, the micro-batch, the batch's other prompts or the order rows finish in. So a run on one
process and a run on N processes draw the same completions, and changing batch sizes changes no sample.
The mixer is SplitMix64 (Steele, Lea, Flood 2014, "Fast splittable pseudorandom number generators").
"""

from __future__ import annotations

import torch
from torch import Tensor

MASK64 = (1 << 64) - 1
GOLDEN = 0x9E3779B97F4A7C15  # 2^64 / golden ratio: SplitMix64's increment
MIX1, MIX2 = 0xBF58476D1CE4E5B9, 0x94D049BB133111EB


def splitmix64(x: int) -> int:
    """SplitMix64's output function on one 64-bit integer (Steele et al. 2014, fig. 2)."""
    z = (x + GOLDEN) & MASK64
    z = ((z ^ (z >> 30)) * MIX1) & MASK64
    z = ((z ^ (z >> 27)) * MIX2) & MASK64
    return z ^ (z >> 31)


def mix_key(*parts: int) -> int:
    """One 63-bit key (a non-negative int64) from integers, each folded in with SplitMix64."""
    z = 0
    for part in parts:
        z = splitmix64(z ^ (part & MASK64))
    return z >> 1


def row_keys(prompt_keys: list[int], group_size: int) -> list[int]:
    """The key of each row p*G + i: the prompt's key mixed with the sample index i."""
    return [mix_key(key, i) for key in prompt_keys for i in range(group_size)]


def _signed(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


def _shift_right(z: Tensor, bits: int) -> Tensor:
    """Logical right shift of int64 bit patterns (torch shifts signed integers arithmetically)."""
    return (z >> bits) & ((1 << (64 - bits)) - 1)


def counter_uniforms(keys: Tensor, counter: int) -> Tensor:
    """Uniforms in [0, 1) [N], float64: SplitMix64 of key + (counter + 1) * GOLDEN, top 53 bits. keys: [N] int64."""
    # int64 products wrap modulo 2^64, which is what the mixer needs; constants above 2^63 enter as negatives
    z = keys + _signed(((counter + 1) * GOLDEN) & MASK64)
    z = (z ^ _shift_right(z, 30)) * _signed(MIX1)
    z = (z ^ _shift_right(z, 27)) * _signed(MIX2)
    z = z ^ _shift_right(z, 31)
    return _shift_right(z, 11).double() * 2.0**-53


def reference_uniform(key: int, counter: int) -> float:
    """The plain twin of `counter_uniforms` for one key, in Python integers."""
    z = (key + (counter + 1) * GOLDEN) & MASK64
    z = ((z ^ (z >> 30)) * MIX1) & MASK64
    z = ((z ^ (z >> 27)) * MIX2) & MASK64
    z ^= z >> 31
    return (z >> 11) * 2.0**-53


def random_prompt_keys(n: int) -> list[int]:
    """Keys drawn from torch's global generator, for callers that give none (evaluation, preflight)."""
    return torch.randint(0, 1 << 62, (n,)).tolist()
