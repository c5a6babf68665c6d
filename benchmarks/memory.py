"""Memory of real GRPO steps on a Llama 3.2 1B-shaped model with random weights: the peak of each phase, split.

    .venv/bin/python benchmarks/memory.py --tiny                       # the tiny body with the 1B vocabulary, < 1 min
    .venv/bin/python benchmarks/memory.py                              # 1B, LoRA and full at 256 tokens; CPU ~15 min
    .venv/bin/python benchmarks/memory.py [--config 1b|3b|8b] [--modes lora,lora_gc,full] [--tokens 256,1024]
    .venv/bin/python benchmarks/memory.py --config 1b --modes lora --tokens 256 --trl  # TRL's column beside it

Random weights built from the published configuration have the real model's shapes, and so its memory. Each
(mode, completion length) runs in a child process of its own: one prompt of 128 tokens, a group of 8 completions
(a random model almost never samples EOS, so they run to the limit), `--steps` GRPO steps through
`groupwise.train.step.grpo_step`. The child records the peak of each phase, load, sampling (`collect_batch`),
reference pass (`reference_and_old_logprobs`) and update (`policy_updates`): on a CPU the resident set's
high-water mark, reset before each phase (`/proc/self/clear_refs`, after `malloc_trim`); on a GPU
`torch.cuda.max_memory_allocated`, reset likewise. It splits the memory into tensor bytes counted directly
(weights, frozen base, adapter, gradients at the optimizer step, optimizer state, reference, the sampler's copy)
and the phases' transients over what was held when they started (sampling: KV cache and decoding; update:
gradients, activations, log-prob chunks), and prints the memory model's prediction (docs/memory.md) beside each.
With `--trl`, each LoRA mode's run is followed by TRL's GRPOTrainer on the same model and settings in a child of
its own (benchmarks/memory_trl.py), measured the same way, and its column is printed beside groupwise's.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import string
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import child_env, machine_info, markdown_table, report, run_child  # noqa: E402

PROMPT_TOKENS, GROUP = 128, 8
BASE = ["model.name=tiny-random", "rollout.prompts_per_step=1", f"rollout.group_size={GROUP}",
        f"train.micro_batch_size={GROUP}", "train.bf16=auto", "log.progress=false", "rollout.weights=shared",
        "train.learning_rate=1e-5"]
MODES = {  # the settings; `full` is the full fine-tuning that fits 16 GB
    "lora": ["lora.enabled=true", "lora.r=16", "lora.target_modules=all-linear", "algorithm.beta=0.04"],
    "lora_gc": ["lora.enabled=true", "lora.r=16", "lora.target_modules=all-linear", "algorithm.beta=0.04",
                "model.gradient_checkpointing=true"],
    "full": ["lora.enabled=false", "algorithm.beta=0", "model.dtype=bfloat16", "train.optimizer=adamw_8bit",
             "model.gradient_checkpointing=true"],
    "full_fp32": ["lora.enabled=false", "algorithm.beta=0.04", "model.dtype=float32"],
    # `full`'s 16 GB settings with float32 weights, for CPUs without fast bf16 (bf16 backward runs at
    # ~0.3 GFLOP/s there): float32 weights and gradients, 8-bit moments, no reference, checkpointing
    "full_fp32_8bit": ["lora.enabled=false", "algorithm.beta=0", "model.dtype=float32", "train.optimizer=adamw_8bit",
                       "model.gradient_checkpointing=true"],
}
MIB = 2**20
SHAPE_NAMES = ("1b", "3b", "8b", "tiny")  # memory_model.SHAPES
PROMPT = (string.ascii_letters * 4)[:PROMPT_TOKENS]  # one token per character with build_tiny_tokenizer


# ---- the child: one (mode, tokens) run ---------------------------------------------------------------------


def trimmed() -> None:
    """Hand glibc's free blocks back to the system, so that the resident set is what is in use."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:
        pass


def status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


class PhasePeaks:
    """The peak of each phase: reset before it, read after it (CPU: VmHWM; CUDA: max_memory_allocated)."""

    def __init__(self, cuda: bool) -> None:
        self.cuda, self.peaks, self.starts = cuda, {}, {}

    def now(self) -> int:
        import torch

        from groupwise.runtime.memory import current_rss_bytes

        if self.cuda:
            return torch.cuda.memory_allocated()
        trimmed()
        return current_rss_bytes()

    def reset(self) -> None:
        import torch

        if self.cuda:
            torch.cuda.reset_peak_memory_stats()
        else:
            trimmed()
            Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS

    def peak(self) -> int:
        import torch

        return torch.cuda.max_memory_allocated() if self.cuda else status_kib("VmHWM") * 1024

    def begin(self, name: str) -> None:
        """Start phase `name`: note what is held now, and reset the peak."""
        self.starts[name] = self.now()
        self.reset()

    def end(self, name: str) -> None:
        """End phase `name`: its peak since `begin` (a later step's replaces an earlier one's)."""
        self.peaks[name] = self.peak()

    def wrap(self, name: str, fn):
        def measured(*args, **kwargs):  # the last step's: the first one also pages in code and lazy imports
            self.begin(name)
            out = fn(*args, **kwargs)
            self.end(name)
            return out

        return measured


def build_model(shape_name: str, dtype: str, device: str):
    """A random Llama of the shape, built in `dtype` on `device` (no float32 copy first, as a checkpoint loads),
    and the character tokenizer."""
    import torch
    from transformers import AutoModelForCausalLM

    from groupwise.models.memory_model import SHAPES, llama_config
    from groupwise.models.tiny import build_tiny_tokenizer

    tokenizer = build_tiny_tokenizer()  # one token per character; its ids are valid in any vocabulary
    config = llama_config(SHAPES[shape_name], pad_token_id=tokenizer.pad_token_id,
                          eos_token_id=tokenizer.eos_token_id, bos_token_id=tokenizer.bos_token_id)
    torch.manual_seed(0)
    with torch.device(device):  # initialised where it runs: a GPU builds 1.2B random weights in a second
        model = AutoModelForCausalLM.from_config(config, dtype=getattr(torch, dtype))
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.set_attn_implementation("sdpa")  # as on a GPU; eager's [rows, heads, T, T] scores would add to it
    return model, tokenizer


def split_parts(model, optimizer, grads: int, reference=None, sampler=None) -> dict[str, int]:
    """Tensor bytes of each persistent part, each storage once; `reference` and `sampler` count only the storages
    that `model` does not own."""
    from groupwise.runtime.memory import tensor_bytes

    owned = {p.untyped_storage().data_ptr() for p in model.parameters()}

    def apart(module) -> list:
        return [] if module is None else [p for p in module.parameters() if p.untyped_storage().data_ptr() not in owned]

    adapter = [p for n, p in model.named_parameters() if "lora_" in n]
    base = [p for n, p in model.named_parameters() if "lora_" not in n]
    state = [v for s in optimizer.state.values() for v in s.values() if hasattr(v, "dim") and v.dim() > 0]
    masters = getattr(optimizer, "masters", [])
    return {"weights": tensor_bytes(base), "adapter": tensor_bytes(adapter), "gradients": grads,
            "optimizer": tensor_bytes(state) + tensor_bytes(masters), "reference": tensor_bytes(apart(reference)),
            "sampler_copy": tensor_bytes(apart(sampler))}


def split(policy, optimizer, grads: int) -> dict[str, int]:
    """groupwise's parts: the policy's weights and adapter, its reference copy and its sampler's copy."""
    engine = getattr(policy.sampler, "engine", None)
    return split_parts(policy.model, optimizer, grads, policy.reference, getattr(engine, "model", None))


def settings(mode: str, tokens: int | str, cuda: bool):
    """groupwise's configuration of `mode` at `tokens` completion tokens."""
    from groupwise.config.load import build_config

    return build_config(None, BASE + MODES[mode] + [f"rollout.max_new_tokens={tokens}",
                                                    f"model.device={'cuda' if cuda else 'cpu'}"])


def load_model(cfg, shape_name: str, cuda: bool):
    """The random model in the dtype groupwise's run gives it (bf16 for LoRA only where bf16 pays)."""
    import torch

    from groupwise.models.precision import bf16_pays

    dtype = "float32" if cfg.model.dtype == "auto" else cfg.model.dtype
    model, tokenizer = build_model(shape_name, dtype, "cuda" if cuda else "cpu")
    if cfg.model.dtype == "auto" and cfg.lora.enabled and bf16_pays(model):  # as load_configured_model does
        model.to(torch.bfloat16)
    return model, tokenizer


def parity(completion_ids: list[list[int]], **_: Any) -> list[float]:
    """The trivial reward both trainers score: the parity of the completion's token ids."""
    return [float(sum(ids) % 2) for ids in completion_ids]


def step_inputs():
    """The steps' one prompt (PROMPT_TOKENS characters, a token each) and groupwise's parity reward on it."""
    from groupwise.rewards.compute import RewardFunction

    return PROMPT, RewardFunction("parity", parity, 1.0)


def child(args: argparse.Namespace) -> None:
    import torch

    from groupwise.runtime.memory import tensor_bytes
    from groupwise.train import step as step_module
    from groupwise.train.optim import build_optimizer
    from groupwise.train.policy import wrap_policy

    torch.set_num_threads(args.threads)
    cuda = torch.cuda.is_available()
    mode, tokens = args.child.split(":")
    cfg = settings(mode, tokens, cuda)
    meter = PhasePeaks(cuda)
    baseline = meter.now()
    meter.reset()
    start = time.perf_counter()
    model, tokenizer = load_model(cfg, args.config, cuda)
    policy = wrap_policy(model, cfg)
    optimizer, scheduler = build_optimizer(policy.trainable_parameters(), cfg.train)
    meter.end("load")
    grads = [0]
    inner_step = optimizer.step

    def counted_step(*a, **k):
        grads[0] = max(grads[0], tensor_bytes(p.grad for p in policy.trainable_parameters() if p.grad is not None))
        return inner_step(*a, **k)

    optimizer.step = counted_step
    for name, phase in (("collect_batch", "sampling"), ("reference_and_old_logprobs", "reference"),
                        ("policy_updates", "update")):
        setattr(step_module, name, meter.wrap(phase, getattr(step_module, name)))
    _, reward = step_inputs()
    lengths = []
    for step in range(1, args.steps + 1):
        metrics = step_module.grpo_step(policy, tokenizer, optimizer, scheduler, cfg, [reward],
                                        lambda n: ([{"prompt": PROMPT}] * n, [PROMPT] * n), step=step)
        lengths.append(metrics["completion_len/mean"])
    report({"system": "groupwise", "mode": mode, "tokens": int(tokens), "device": "cuda" if cuda else "cpu",
            "config": args.config, "baseline": baseline, "peaks": meter.peaks, "starts": meter.starts,
            "split": split(policy, optimizer, grads[0]), "completion_len": lengths, "bf16_compute": policy.bf16,
            "weight_bytes": next(p for n, p in policy.model.named_parameters() if "lora_" not in n).element_size(),
            "prompt_tokens": len(tokenizer(PROMPT)["input_ids"]), "steps": args.steps,
            "seconds": round(time.perf_counter() - start, 1)})


# ---- the parent: one child per run, and the tables ----------------------------------------------------------


def predicted(record: dict[str, Any]) -> dict[str, int]:
    """The memory model's parts for a run as the child ran it (its weights' dtype, bf16 autocast or not)."""
    from groupwise.models.memory_model import SHAPES, Setup, step_parts

    mode, cpu = MODES[record["mode"]], record["device"] == "cpu"
    setup = Setup(lora="lora.enabled=true" in mode, weight_bytes=record["weight_bytes"],
                  optimizer="adamw_8bit" if "train.optimizer=adamw_8bit" in mode else "adamw",
                  reference="algorithm.beta=0.04" in mode, sampler_copy=False,
                  checkpointing="model.gradient_checkpointing=true" in mode, group=GROUP,
                  prompt_tokens=record["prompt_tokens"], completion_tokens=record["tokens"],
                  compute_bytes=2 if record["bf16_compute"] else 4, cpu=cpu)
    return step_parts(SHAPES[record["config"]], setup)


PARTS = ("weights", "adapter", "gradients", "optimizer", "reference", "sampler_copy")
PHASES = ("load", "sampling", "reference", "update")
LABELS = [*PARTS, "sampling: KV cache + one token's temporaries",
          "update: gradients + activations + head and optimizer temporaries",
          *(f"peak: {phase} (over the process baseline)" for phase in PHASES),
          "process baseline (RSS after imports)", "whole child's peak RSS", "mean completion length (tokens)"]


def mib(value: float | None) -> int | None:
    """Bytes as whole MiB, None kept."""
    return None if value is None else round(value / MIB)


def measured(record: dict[str, Any]) -> list[int | float | None]:
    """A run's column of the table: its parts, its phases' transients and peaks (None where a phase was not
    isolated), its baseline, whole peak and mean completion length."""
    got, starts, peaks = record["split"], record["starts"], record["peaks"]

    def over(phase: str, base: int | None) -> int | None:
        return None if phase not in peaks or base is None else mib(peaks[phase] - base)

    lengths = record["completion_len"]
    return [*(mib(got[part]) for part in PARTS), over("sampling", starts.get("sampling")),
            over("update", starts.get("update")), *(over(phase, record["baseline"]) for phase in PHASES),
            mib(record["baseline"]), record.get("child_peak_rss_mib"),
            round(sum(lengths) / len(lengths), 1) if lengths else None]


def expected(record: dict[str, Any]) -> list[int | None]:
    """The memory model's column for the same rows (None where it predicts nothing)."""
    from groupwise.models.memory_model import phase_peaks, update_transient

    cpu = record["device"] == "cpu"
    guess = predicted(record)
    model_peaks = phase_peaks(guess, cpu)
    return [*(mib(guess[part]) for part in PARTS), mib(guess["kv_cache"] + guess["sampling"]),
            mib(update_transient(guess, cpu)), *(mib(model_peaks.get(phase)) for phase in PHASES), None, None,
            record["tokens"]]


def rows(record: dict[str, Any], peer: dict[str, Any] | None = None) -> list[list[Any]]:
    """The measured split beside the prediction, in MiB, and beside it a peer's (TRL's) measurement."""
    columns = [LABELS, measured(record), expected(record)] + ([measured(peer)] if peer else [])
    return [list(row) for row in zip(*columns, strict=True)]


GPU_SETUPS = {  # the memory model's GPU configurations (bf16 compute, the sampler on the policy's weights)
    "LoRA r16": {"lora": True},
    "LoRA r16, no checkpointing": {"lora": True, "checkpointing": False},
    "full, fp32 AdamW, reference": {"lora": False, "weight_bytes": 4, "reference": True, "checkpointing": False},
    "full, bf16 + 8-bit AdamW, beta 0": {"lora": False, "optimizer": "adamw_8bit"},
    "full, bf16 + offload, beta 0": {"lora": False, "offload": True},
}
GPU_SIZES_GB = (16, 24, 40, 80)
CUDA_CONTEXT_GIB, FRAGMENTATION = 0.5, 1.1  # assumed: the CUDA context, and the caching allocator's slack


def smallest_fit(peak_gib: float) -> str:
    """The smallest GPU of GPU_SIZES_GB (GiB, as cards are sold) holding `peak_gib` with context and slack."""
    need = peak_gib * FRAGMENTATION + CUDA_CONTEXT_GIB
    return next((str(gb) for gb in GPU_SIZES_GB if need <= gb), "> 80")


def prediction_table() -> str:
    """Predicted GPU peaks (GiB) of the GPU setups for 1B/3B/8B at 256/1024/4096 completion tokens, and the
    smallest of 16/24/40/80 GB that holds each."""
    from groupwise.models.memory_model import SHAPES, Setup, predicted_peak

    table = []
    for name, settings in GPU_SETUPS.items():
        for size in ("1b", "3b", "8b"):
            cells = []
            for tokens in (256, 1024, 4096):
                peak = predicted_peak(SHAPES[size], Setup(completion_tokens=tokens, **settings)) / 2**30
                cells.append(f"{peak:.1f} ({smallest_fit(peak)})")
            table.append([name, size, *cells])
    return markdown_table(["setup", "model", "256 tokens", "1024 tokens", "4096 tokens"], table)


TRL_SCRIPT = Path(__file__).with_name("memory_trl.py")
TRL_MODES = ("lora", "lora_gc")  # TRL builds a full fine-tuning's reference from a path, not from a model object


def measure(script: Path, mode: str, tokens: str, args: argparse.Namespace) -> dict[str, Any] | None:
    """One child run of `script` (this file: groupwise; memory_trl.py: TRL): its record, or None when it failed."""
    cmd = [sys.executable, str(script), "--child", f"{mode}:{tokens}", "--config", args.config,
           "--steps", str(args.steps), "--threads", str(args.threads)]
    env = child_env(args.threads, torchao="train.optimizer=adamw_8bit" in MODES[mode])
    if args.mmap_threshold:  # glibc: blocks above it are mapped and unmapped one by one, so RSS follows live tensors
        env["MALLOC_MMAP_THRESHOLD_"] = str(args.mmap_threshold)
    result = run_child(cmd, env=env)
    if result.record is None:
        print(f"{script.name} {mode} at {tokens} tokens failed (exit code {result.returncode})", flush=True)
        return None
    return result.record | {"child_peak_rss_mib": round(result.peak_rss_mib), "mmap_threshold": args.mmap_threshold}


def show(record: dict[str, Any], peer: dict[str, Any] | None) -> None:
    """Print one run's header line and its table, with TRL's column when it ran."""
    print(f"\n{record['config']} {record['mode']}, {record['prompt_tokens']} + {record['tokens']} tokens, group "
          f"{GROUP}, {record['device']}, {record['steps']} steps, groupwise {record['seconds']} s"
          + (f", TRL {peer['version']} {peer['seconds']} s" if peer else "")
          + (f", MALLOC_MMAP_THRESHOLD_={record['mmap_threshold']}" if record.get("mmap_threshold") else "") + "\n",
          flush=True)
    headers = ["part (MiB)", "measured", "predicted"] + ([f"TRL {peer['version']} measured"] if peer else [])
    print(markdown_table(headers, rows(record, peer)), flush=True)


def defaults(args: argparse.Namespace) -> tuple[str, str, int]:
    """Modes, completion lengths and steps left unset: the issue's table on a GPU; on a CPU the acceptance's
    runs, about 15 minutes on 2 cores (a 1B step there is 7-8 minutes, half of it decoding 256 tokens)."""
    import torch

    from groupwise.models.precision import cpu_has_fast_bf16

    if torch.cuda.is_available():
        return args.modes or "lora,lora_gc,full", args.tokens or "256,1024", args.steps or 2
    full = "full" if cpu_has_fast_bf16() else "full_fp32_8bit"  # bf16's backward is ~100x slower without it
    return args.modes or f"lora,{full}", args.tokens or "256", args.steps or 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="1b", choices=SHAPE_NAMES)
    parser.add_argument("--tiny", action="store_true", help="the tiny body with the 1B vocabulary (a quick check)")
    parser.add_argument("--modes", help=f"comma-separated, of {', '.join(MODES)} (default: on a GPU lora,lora_gc,"
                        "full; on a CPU lora and full, or full_fp32_8bit where bf16 is slow)")
    parser.add_argument("--tokens", help="completion lengths (default: 256,1024 on a GPU, 256 on a CPU)")
    parser.add_argument("--steps", type=int, help="GRPO steps per run (default: 2 on a GPU, 1 on a CPU)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--out", help="write every record as JSON here")
    parser.add_argument("--gpu", action="store_true", help="the GPU row of benchmarks/gpu_smoke.sh: 1b, "
                        "lora and full at 256 tokens, 2 steps")
    parser.add_argument("--predict", action="store_true", help="print the memory model's GPU table and exit")
    parser.add_argument("--trl", action="store_true", help="also run TRL's GRPOTrainer (memory_trl.py) beside "
                        f"each of the modes {', '.join(TRL_MODES)}, measured the same way")
    parser.add_argument("--mmap-threshold", type=int, help="set glibc's MALLOC_MMAP_THRESHOLD_ (bytes) in the "
                        "children: freed blocks above it go back to the system at once instead of staying in the "
                        "heap, so a CPU peak counts live memory rather than glibc's cache (e.g. 65536)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.tiny:  # a minute: no 8-bit optimizer (torch.compile) nor bf16 (slow on most CPUs)
        args.config, args.modes, args.tokens = "tiny", args.modes or "lora,full_fp32", args.tokens or "64"
        args.steps = args.steps or 2  # the last step's peaks: the first also pages in code
    if args.gpu:
        args.config, args.modes, args.tokens = "1b", args.modes or "lora,full", args.tokens or "256"
    if args.child:  # handed every setting by the parent
        return child(args)
    if args.predict:
        return print(prediction_table())
    args.modes, args.tokens, args.steps = defaults(args)
    records = []
    print(json.dumps(machine_info()), flush=True)
    for mode in args.modes.split(","):
        for tokens in args.tokens.split(","):
            record = measure(Path(__file__), mode, tokens, args)
            peer = measure(TRL_SCRIPT, mode, tokens, args) if args.trl and mode in TRL_MODES else None
            records += [r for r in (record, peer) if r is not None]
            if record is not None:
                show(record, peer)
    if args.out:
        Path(args.out).write_text(json.dumps({"machine": machine_info(), "records": records}, indent=2) + "\n")


if __name__ == "__main__":
    main()
