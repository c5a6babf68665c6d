"""bf16 on a CPU without fast bf16 units: asking for it explicitly warns, 'auto' and float32 stay quiet."""

import pytest
import torch

from groupwise.models import precision

CPU, CUDA = torch.device("cpu"), torch.device("cuda")


@pytest.mark.parametrize(("dtype", "bf16", "fast", "device", "warns"), [
    ("bfloat16", "auto", False, CPU, "model.dtype bfloat16"),
    ("auto", True, False, CPU, "train.bf16 true"),
    ("float32", True, False, CPU, "train.bf16 true"),
    ("auto", "auto", False, CPU, None),
    ("float32", False, False, CPU, None),
    ("bfloat16", True, True, CPU, None),  # AVX512-BF16 or AMX: bf16 is the fast path
    ("bfloat16", True, False, CUDA, None),
])
def test_slow_bf16_warning(monkeypatch, dtype, bf16, fast, device, warns):
    monkeypatch.setattr(precision, "cpu_has_fast_bf16", lambda: fast)
    warning = precision.slow_bf16_warning(dtype, bf16, device)
    if warns is None:
        assert warning is None
    else:
        assert warning.startswith(warns) and "model.dtype: auto" in warning
