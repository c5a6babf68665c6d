"""log softmax(h W^T / T)[target] and entropy for many tokens, one chunk of logits alive at a time.

A hand-written autograd function: forward keeps only the log-normaliser per token, backward recomputes each
chunk's logits and turns them into the gradient in place, d logp / d logits = onehot(target) - softmax. Against
autograd through `log_softmax` + `gather` this is a third of the passes over the [chunk, vocab] logits and no
per-op temporaries of that size, which is where most of a small model's training step went on a CPU.
"""

from __future__ import annotations

import threading
from typing import Any

import torch
from torch import Tensor


def compute_dtype(device: torch.device, fallback: torch.dtype) -> torch.dtype:
    """The dtype matrix products run in here: autocast's when it is on, else the inputs' own."""
    if torch.is_autocast_enabled(device.type):
        return torch.get_autocast_dtype(device.type)
    return fallback


def _chunk_logits(h: Tensor, weight: Tensor, inv_temperature: float, out: Tensor) -> Tensor:
    """h @ weight.T / T as float32, written into `out` (a buffer reused chunk after chunk)."""
    logits = out[: h.shape[0]]
    if h.dtype == logits.dtype:  # straight into the buffer: `h @ weight.T` would allocate a [chunk, V] temporary
        torch.mm(h, weight.T, out=logits)
    else:
        logits.copy_(h @ weight.T)
    return logits.mul_(inv_temperature) if inv_temperature != 1.0 else logits


# CPU only, per thread (an async run's producer scores the reference while the trainer updates; one shared buffer
# would let each overwrite the other's logits): slot -> the largest [rows, vocab] buffer asked for so far
_workspace = threading.local()


def _buffer(rows: int, weight: Tensor, slot: str, dtype: torch.dtype = torch.float32) -> Tensor:
    """A [rows, vocab] scratch tensor. On a CPU it is kept between calls: glibc hands every block over 32 MiB
    back to the kernel on free, and faulting 50 MB of fresh pages in costs as much as the arithmetic on them
    (the default job: 26 s of system time without this workspace, 10 s with it). CUDA's caching allocator
    already reuses memory."""
    if weight.device.type != "cpu":
        return torch.empty(rows, weight.shape[0], dtype=dtype, device=weight.device)
    buffers: dict[tuple, Tensor] = _workspace.__dict__.setdefault("buffers", {})
    key = (slot, weight.shape[0], dtype)
    buffer = buffers.get(key)
    if buffer is None or buffer.shape[0] < rows:
        buffer = buffers[key] = torch.empty(rows, weight.shape[0], dtype=dtype)
    return buffer[:rows]


class TokenLogProbs(torch.autograd.Function):
    """(hidden [N, H], weight [V, H], targets [N]) -> (logp [N], entropy [N]); entropy is not differentiable.

    Two float32 [chunk, V] buffers serve every chunk (and, on a CPU, every call): a fresh large tensor per
    operation would be page-faulted in each time, which on a CPU cost more than the arithmetic.
    """

    @staticmethod
    def forward(ctx: Any, hidden: Tensor, weight: Tensor, targets: Tensor, inv_temperature: float, chunk: int,
                dtype: torch.dtype) -> tuple[Tensor, Tensor]:
        h, w = hidden.to(dtype), weight.to(dtype)
        n = hidden.shape[0]
        logp = torch.empty(n, dtype=torch.float32, device=hidden.device)
        entropy, log_z = torch.empty_like(logp), torch.empty_like(logp)
        logits_buffer, probs_buffer = _buffer(min(chunk, n), w, "logits"), _buffer(min(chunk, n), w, "probs")
        for start in range(0, n, chunk):
            end = min(start + chunk, n)
            logits = _chunk_logits(h[start:end], w, inv_temperature, logits_buffer)
            peak = logits.amax(-1, keepdim=True)
            logits.sub_(peak)  # shifted: the largest logit of each row is 0
            probs = torch.exp(logits, out=probs_buffer[: end - start])
            mass = probs.sum(-1, keepdim=True)
            log_mass = mass.log()
            logp[start:end] = (logits.gather(-1, targets[start:end, None]) - log_mass).squeeze(-1)
            # H = log Z - E_p[logit] (the shift cancels)
            entropy[start:end] = (log_mass - probs.mul_(logits).sum(-1, keepdim=True) / mass).squeeze(-1)
            log_z[start:end] = (peak + log_mass).squeeze(-1)
        ctx.save_for_backward(hidden, weight, targets, log_z)
        ctx.inv_temperature, ctx.chunk, ctx.dtype = inv_temperature, chunk, dtype
        ctx.mark_non_differentiable(entropy)
        return logp, entropy

    @staticmethod
    def backward(ctx: Any, grad_logp: Tensor, _grad_entropy: Tensor) -> tuple[Tensor | None, ...]:
        hidden, weight, targets, log_z = ctx.saved_tensors
        need_h, need_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        h, w = hidden.to(ctx.dtype), weight.to(ctx.dtype)
        n = hidden.shape[0]
        grad_h = torch.empty_like(hidden) if need_h else None
        grad_w = torch.zeros(weight.shape, dtype=torch.float32, device=weight.device) if need_w else None
        grad_logp = grad_logp.float()
        buffer = _buffer(min(ctx.chunk, n), w, "logits")
        low = buffer if ctx.dtype == torch.float32 else _buffer(buffer.shape[0], w, "low", ctx.dtype)
        for start in range(0, n, ctx.chunk):
            end = min(start + ctx.chunk, n)
            g = grad_logp[start:end, None]
            logits = _chunk_logits(h[start:end], w, ctx.inv_temperature, buffer)
            grad_logits = logits.sub_(log_z[start:end, None]).exp_().mul_(-g)  # -g * softmax
            grad_logits.scatter_add_(-1, targets[start:end, None], g)  # + g * onehot(target)
            if ctx.inv_temperature != 1.0:
                grad_logits.mul_(ctx.inv_temperature)
            grad_low = low[: end - start].copy_(grad_logits)
            if need_h:
                grad_h[start:end] = grad_low @ w
            if need_w:
                grad_w.add_(grad_low.T @ h[start:end])
        return grad_h, grad_w.to(weight.dtype) if need_w else None, None, None, None, None


def token_logprobs(hidden: Tensor, weight: Tensor, targets: Tensor, *, chunk: int, temperature: float = 1.0
                   ) -> tuple[Tensor, Tensor]:
    """Log-probs of `targets` and entropies under softmax(hidden @ weight.T / temperature), in float32."""
    dtype = compute_dtype(hidden.device, hidden.dtype if hidden.dtype == weight.dtype else torch.float32)
    return TokenLogProbs.apply(hidden, weight, targets, 1.0 / temperature, chunk, dtype)
