"""A memory model of one GRPO step on a Llama-shaped decoder: bytes per parameter and per token for each part.

Every function is a formula on the shape; docs/memory.md derives them and compares them with
benchmarks/memory.py's measurements. Dimensions: h hidden, i intermediate, L layers, a heads, k KV heads,
d head size, V vocabulary; rows (completions in one pass) and tokens (prompt + completion per row).
"""

from __future__ import annotations

from dataclasses import dataclass

from transformers import LlamaConfig


@dataclass(frozen=True)
class LlamaShape:
    hidden: int
    intermediate: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab: int
    tied: bool


# the published configurations (config.json of meta-llama/Llama-3.2-1B, Llama-3.2-3B, Llama-3.1-8B)
SHAPES = {
    "1b": LlamaShape(2048, 8192, 16, 32, 8, 64, 128256, tied=True),
    "3b": LlamaShape(3072, 8192, 28, 24, 8, 128, 128256, tied=True),
    "8b": LlamaShape(4096, 14336, 32, 32, 8, 128, 128256, tied=False),
    "tiny": LlamaShape(64, 128, 2, 4, 2, 16, 128256, tied=True),  # the 1B's vocabulary on a tiny body
}


def llama_config(shape: LlamaShape, **extra) -> LlamaConfig:
    """The transformers configuration of `shape` (random weights built from it have the real model's memory)."""
    return LlamaConfig(vocab_size=shape.vocab, hidden_size=shape.hidden, intermediate_size=shape.intermediate,
                       num_hidden_layers=shape.layers, num_attention_heads=shape.heads,
                       num_key_value_heads=shape.kv_heads, head_dim=shape.head_dim,
                       tie_word_embeddings=shape.tied, max_position_embeddings=8192, **extra)


def layer_linears(s: LlamaShape) -> list[tuple[int, int]]:
    """(in, out) of one decoder layer's linear maps: q, k, v, o, gate, up, down (Touvron et al. 2023, GQA)."""
    q, kv = s.heads * s.head_dim, s.kv_heads * s.head_dim
    return [(s.hidden, q), (s.hidden, kv), (s.hidden, kv), (q, s.hidden),
            (s.hidden, s.intermediate), (s.hidden, s.intermediate), (s.intermediate, s.hidden)]


def llama_parameters(s: LlamaShape) -> int:
    """Parameters: embeddings, L x (linears + two RMSNorms), the final norm, and the LM head unless tied."""
    layer = sum(i * o for i, o in layer_linears(s)) + 2 * s.hidden
    head = 0 if s.tied else s.vocab * s.hidden
    return s.vocab * s.hidden + s.layers * layer + s.hidden + head


def lora_parameters(s: LlamaShape, r: int) -> int:
    """LoRA on every linear of every layer (peft's all-linear; not the LM head): r x (in + out) each (Hu et al.
    2021)."""
    return s.layers * sum(r * (i + o) for i, o in layer_linears(s))


def kv_cache_bytes(s: LlamaShape, rows: int, tokens: int, dtype_bytes: int) -> int:
    """Keys and values of every layer for rows x tokens positions (Pope et al. 2022, "Efficiently Scaling
    Transformer Inference", sec. 2): 2 L k d per token."""
    return 2 * s.layers * s.kv_heads * s.head_dim * rows * tokens * dtype_bytes


def activation_values_per_token(s: LlamaShape, checkpointing: bool) -> int:
    """Values a training forward saves for backward per token (SDPA attention), counted from transformers'
    LlamaDecoderLayer as Korthikanti et al. 2022 count GPT's: per layer 8h (norm inputs and outputs, q, the
    attention output and o's input, the post-attention norm) + 4i (gate, up, SiLU(gate), their product)
    + 2kd (k, v) + a (the log-sum-exp) + 2; once per model 2h + 2d (the final norm; RoPE's cos and sin). With
    checkpointing each layer keeps only its input h, and one layer's full set lives again while recomputed."""
    layer = 8 * s.hidden + 4 * s.intermediate + 2 * s.kv_heads * s.head_dim + s.heads + 2
    once = 2 * s.hidden + 2 * s.head_dim
    if checkpointing:
        return s.layers * s.hidden + layer + once
    return s.layers * layer + once


def repeated_kv_bytes(s: LlamaShape, rows: int, keys: int, dtype_bytes: int) -> int:
    """The completions' pass over a shared prompt's cache saves each layer's keys and values repeated to all a
    heads over the whole key length (transformers' repeat_kv), per row: 2 L a d per key (measured:
    tests/train/test_memory_model_training.py)."""
    return 2 * s.layers * s.heads * s.head_dim * rows * keys * dtype_bytes


def activation_bytes(s: LlamaShape, rows: int, tokens: int, dtype_bytes: int, checkpointing: bool) -> int:
    """Saved activations of one training pass over rows x tokens (see `activation_values_per_token`)."""
    return rows * tokens * activation_values_per_token(s, checkpointing) * dtype_bytes


def logprob_chunk_bytes(s: LlamaShape, chunk: int) -> int:
    """models/head_logprobs.py: two float32 [chunk, V] buffers, the logits and their exponentials."""
    return 2 * chunk * s.vocab * 4


def head_gradient_bytes(s: LlamaShape) -> int:
    """A trained LM head's float32 [V, h] gradient from models/head_logprobs.py's backward and, when the head is
    tied to the embeddings, the embeddings' own, both alive while autograd sums them into the weight's gradient
    (measured: benchmarks/memory.py --tiny, full_fp32)."""
    return (2 if s.tied else 1) * s.vocab * s.hidden * 4


SAMPLING_ROW_TENSORS = 5  # [rows, V] float32 tensors alive per decoded token (fitted: benchmarks/memory.py --tiny)


def sampling_bytes(s: LlamaShape, rows: int) -> int:
    """One decoded token's [rows, V] temporaries: logits, probabilities, sampling's intermediates (fitted)."""
    return SAMPLING_ROW_TENSORS * rows * s.vocab * 4


OPTIMIZER_BYTES = {"adamw": 8, "adamw_8bit": 2}  # per trained parameter: two moments in float32, or 8 bits each


@dataclass(frozen=True)
class Setup:
    """What one run trains and how; the defaults are the issue's LoRA job on a GPU."""

    lora: bool = True
    r: int = 16
    weight_bytes: int = 2  # bf16 weights (a LoRA base, or full fine-tuning with model.dtype bfloat16)
    optimizer: str = "adamw"
    offload: bool = False  # optimizer state and float32 masters in CPU memory
    reference: bool = False  # full fine-tuning with beta > 0 keeps a frozen copy
    sampler_copy: bool = False  # rollout.weights copy (the CPU default); GPUs share the policy's weights
    checkpointing: bool = True
    group: int = 8  # rows of one micro-batch, and completions sampled at once
    prompt_tokens: int = 128
    completion_tokens: int = 256
    compute_bytes: int = 2  # activations and KV cache: bf16 autocast on a GPU
    chunk: int = 256
    cpu: bool = False  # on a CPU the log-prob chunks' buffers are kept between passes (models/head_logprobs.py)


def training_tokens(u: Setup) -> int:
    """Tokens one training pass over a group runs through the layers: its prompt once and every completion
    (train/batch.py shares each prompt's pass across its group), or, under gradient checkpointing, which turns
    the sharing off (train/step.py), every row's prompt and completion."""
    if u.checkpointing:
        return u.group * (u.prompt_tokens + u.completion_tokens)
    return u.prompt_tokens + u.group * u.completion_tokens


def step_parts(s: LlamaShape, u: Setup) -> dict[str, int]:
    """Bytes of each part of a GRPO step (docs/memory.md); `phase_peaks` adds them up phase by phase."""
    n = llama_parameters(s)
    trained = lora_parameters(s, u.r) if u.lora else n
    trained_bytes = 4 if u.lora else u.weight_bytes  # the adapter trains in float32; full fine-tuning in its dtype
    tokens = u.prompt_tokens + u.completion_tokens
    return {
        "weights": n * u.weight_bytes,
        "adapter": trained * 4 if u.lora else 0,
        "gradients": trained * trained_bytes,
        "optimizer": 0 if u.offload else trained * OPTIMIZER_BYTES[u.optimizer],
        "optimizer_step": 0 if u.offload or u.optimizer != "adamw" else trained * trained_bytes,  # foreach's sqrt(v)
        "reference": n * u.weight_bytes if u.reference and not u.lora else 0,
        "sampler_copy": n * u.weight_bytes if u.sampler_copy else 0,
        "kv_cache": kv_cache_bytes(s, u.group, tokens, u.compute_bytes),
        "sampling": sampling_bytes(s, u.group),
        "activations": activation_bytes(s, 1, training_tokens(u), u.compute_bytes, u.checkpointing)
        + (0 if u.checkpointing else repeated_kv_bytes(s, u.group, tokens, u.compute_bytes)),
        "logprob_chunks": logprob_chunk_bytes(s, u.chunk),
        "head_gradient": 0 if u.lora else head_gradient_bytes(s),
    }


PERSISTENT = ("weights", "adapter", "optimizer", "reference", "sampler_copy")  # held through the whole step


def phase_peaks(parts: dict[str, int], cpu: bool = False) -> dict[str, int]:
    """The peak of each phase: what persists, plus the KV cache and one token's temporaries while sampling, or
    the gradients, activations, log-prob chunks, the head's gradient and the optimizer's temporaries while
    updating (gradients are freed after each optimizer step). On a CPU the chunks' buffers persist."""
    held = sum(parts[name] for name in PERSISTENT) + (parts["logprob_chunks"] if cpu else 0)
    return {"sampling": held + parts["kv_cache"] + parts["sampling"],
            "update": held + update_transient(parts, cpu)}


def update_transient(parts: dict[str, int], cpu: bool = False) -> int:
    """What the update adds to the held memory at its peak (the chunks' buffers are held already on a CPU)."""
    chunks = 0 if cpu else parts["logprob_chunks"]
    return parts["gradients"] + parts["activations"] + chunks + max(parts["head_gradient"], parts["optimizer_step"])


def predicted_peak(s: LlamaShape, u: Setup) -> int:
    """The step's peak bytes: the larger of its phases' peaks."""
    return max(phase_peaks(step_parts(s, u), u.cpu).values())
