"""Per-rank peak memory of full fine-tuning on 1 process and on 2 (FSDP2, sharded from the meta device), load included.

    .venv/bin/python benchmarks/fsdp_memory.py --shape tiny                      # a smoke run, about a minute
    # the 1B shape, 12 minutes on a 2-core CPU, run with MALLOC_MMAP_THRESHOLD_=65536 (docs/memory.md):
    .venv/bin/python benchmarks/fsdp_memory.py --shape 1b --dtype bfloat16 --beta 0 --prompt-tokens 2 --tokens 2

A random Llama of the shape (benchmarks/memory.py's builder: the published configuration, so the real model's
memory) is trained with full fine-tuning, with a reference when `--beta` > 0, for `--steps` GRPO steps through
`groupwise.train.step.grpo_step`: 2 prompts of 128 tokens per step, groups of 8, `--tokens` completion tokens
(a random model rarely ends earlier), weights and the sampler's copy in `--dtype` (`--rollout-dtype`), the
optimizer `--optimizer` (AdamW, or torchao's 8-bit AdamW, which shards like the weights). One process runs
it as one process does; two torchrun processes (gloo) load it the FSDP2 way (`load_sharded_model`: rank 0 builds
the model, every rank builds it on the meta device, shards it and receives its shards from rank 0) and each samples
one group. Each rank records its resident set's high-water mark (VmHWM, over its RSS after imports) as it stands
after the load (rank 0 only: the other ranks load nothing), after the shards arrive (two processes), after the
policy is wrapped (the reference, the sampler's whole copy) and after the steps; and the tensor bytes it holds.
The table compares the largest rank's peak with the one process's.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import child_env, machine_info, markdown_table, report, run_child, write_json  # noqa: E402
from memory import GROUP, PhasePeaks, build_model, step_inputs  # noqa: E402

MIB = 2**20
PHASES = ("load", "shards", "policy", "steps")  # cumulative high-water marks, in this order


def overrides(args: argparse.Namespace) -> list[str]:
    """The run's config: full fine-tuning, one group per rank on 2 processes."""
    return ["lora.enabled=false", f"algorithm.beta={args.beta}", "rollout.prompts_per_step=2",
            f"rollout.group_size={GROUP}", f"train.micro_batch_size={GROUP}", f"rollout.max_new_tokens={args.tokens}",
            f"model.dtype={args.dtype}", f"rollout.dtype={args.rollout_dtype}", "train.bf16=false",
            f"train.optimizer={args.optimizer}", "log.progress=false", "train.learning_rate=1e-5", "model.device=cpu"]


# ---- the child: one rank of one layout ------------------------------------------------------------------------


def held_bytes(policy, optimizer) -> dict[str, int]:
    """Tensor bytes this rank holds: its weights (shards), the reference, the sampler's copy, the optimizer state."""
    from groupwise.runtime.memory import tensor_bytes

    engine_model = getattr(policy.sampler.engine, "model", policy.model)
    state = [v for s in optimizer.state.values() for v in s.values() if hasattr(v, "dim") and v.dim() > 0]
    return {"weights": tensor_bytes(policy.model.parameters()),
            "reference": 0 if policy.reference is None else tensor_bytes(policy.reference.parameters()),
            "sampler_copy": 0 if engine_model is policy.model else tensor_bytes(engine_model.parameters()),
            "optimizer": tensor_bytes(state)}


def child(args: argparse.Namespace) -> None:
    import torch

    from groupwise.config.load import build_config
    from groupwise.runtime.distributed import all_gather_objects, init_distributed, rank, world_size
    from groupwise.train.meta_init import load_sharded_model
    from groupwise.train.optim import build_optimizer
    from groupwise.train.policy import wrap_policy
    from groupwise.train.step import grpo_step

    init_distributed("cpu")
    torch.set_num_threads(args.threads)
    cfg = build_config(None, overrides(args))
    meter, start = PhasePeaks(cuda=False), time.perf_counter()
    baseline, peaks = meter.now(), {}
    meter.reset()  # the high-water mark from here on: the imports' transients do not count

    def mark(name: str) -> None:
        peaks[name] = meter.peak() - baseline

    def load():
        loaded = build_model(args.shape, args.dtype, "cpu")
        mark("load")
        return loaded

    if world_size() > 1:
        model, tokenizer = load_sharded_model(cfg, load)
        mark("shards")
    else:
        model, tokenizer = load()
    policy = wrap_policy(model, cfg)
    optimizer, scheduler = build_optimizer(policy.trainable_parameters(), cfg.train)
    mark("policy")
    prompt, parity = step_inputs()
    prompt = prompt[: args.prompt_tokens]  # a character is a token (memory.py's tokenizer)
    for step in range(1, args.steps + 1):
        grpo_step(policy, tokenizer, optimizer, scheduler, cfg, [parity],
                  lambda n: ([{"prompt": prompt}] * n, [prompt] * n), step=step)
    mark("steps")
    record = {"world_size": world_size(), "rank": rank(), "peaks": peaks,
              "held": held_bytes(policy, optimizer), "seconds": round(time.perf_counter() - start, 1)}
    for each in all_gather_objects(record):  # rank 0 reports every rank's: the ranks share one stdout
        if rank() == 0:
            report(each)


# ---- the parent: the two layouts, and the table ---------------------------------------------------------------


def run_layout(args: argparse.Namespace, nproc: int) -> list[dict[str, Any]]:
    """Every rank's record of one layout (1 or 2 processes), the cores shared out between the processes."""
    script = [__file__, "--child", "--shape", args.shape, "--tokens", str(args.tokens), "--steps", str(args.steps),
              "--prompt-tokens", str(args.prompt_tokens),
              "--dtype", args.dtype, "--rollout-dtype", args.rollout_dtype, "--optimizer", args.optimizer,
              "--beta", str(args.beta), "--threads", str(max(1, args.threads // nproc))]
    launch = ["-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}"] if nproc > 1 else []
    env = child_env(max(1, args.threads // nproc), torchao=args.optimizer == "adamw_8bit")
    result = run_child([sys.executable, *launch, *script], env=env)
    if result.returncode != 0 or len(result.records) != nproc:
        print(f"the {nproc}-process run failed (exit code {result.returncode}; -9: killed, out of memory?)",
              flush=True)
        return []
    return sorted(result.records, key=lambda r: r["rank"])


def mib(value: int | None) -> int | None:
    return None if value is None else round(value / MIB)


def table(records: list[dict[str, Any]]) -> str:
    """One row per rank of each layout: its high-water marks after each phase and the tensor bytes it holds."""
    rows = [[f"{r['world_size']} process{'es' if r['world_size'] > 1 else ''}, rank {r['rank']}",
             *(mib(r["peaks"].get(phase)) for phase in PHASES),
             *(mib(r["held"][part]) for part in ("weights", "reference", "sampler_copy", "optimizer")), r["seconds"]]
            for r in records]
    return markdown_table(["layout", "peak: load", "peak: shards", "peak: policy", "peak: steps", "weights",
                           "reference", "sampler copy", "optimizer", "s"], rows)


def peak_ratio(records: list[dict[str, Any]]) -> dict[str, float]:
    """The one process's whole-run peak, the largest rank's at 2 processes (MiB), and their ratio."""
    one = max(r["peaks"]["steps"] for r in records if r["world_size"] == 1)
    two = max(r["peaks"]["steps"] for r in records if r["world_size"] == 2)
    return {"one_process_mib": round(one / MIB), "two_processes_max_rank_mib": round(two / MIB),
            "ratio": round(two / one, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", default="tiny", choices=["1b", "tiny"])
    parser.add_argument("--tokens", type=int, default=16, help="completion tokens per sample")
    parser.add_argument("--steps", type=int, default=1)
    parser.add_argument("--prompt-tokens", type=int, default=128,
                        help="prompt length (at most 128; shorter makes the 1B step affordable on a CPU)")
    parser.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float32"],
                        help="weights, gradients and AdamW's moments (and the sampler's copy: --rollout-dtype)")
    parser.add_argument("--rollout-dtype", choices=["bfloat16", "float32"],
                        help="the sampler's copy (default: --dtype); bfloat16 decodes at float32's speed on CPUs "
                        "without AVX512-BF16, where bf16 training is ~100x slower (its backward's products)")
    parser.add_argument("--optimizer", default="adamw", choices=["adamw", "adamw_8bit"],
                        help="train.optimizer (adamw_8bit: torchao, on PYTHONPATH)")
    parser.add_argument("--beta", type=float, default=0.04, help="algorithm.beta: > 0 keeps a (sharded) reference")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="CPU threads, shared by the ranks")
    parser.add_argument("--out", help="write every record as JSON here")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.rollout_dtype = args.rollout_dtype or args.dtype
    if args.child:
        return child(args)
    print(json.dumps(machine_info()), flush=True)
    records = run_layout(args, 1)
    if records:  # the one process's figures stand on their own if the two processes then fail
        print(json.dumps({"one_process": records}), flush=True)
    records += run_layout(args, 2)
    if {r["world_size"] for r in records} != {1, 2}:
        raise SystemExit("no comparison: a layout failed")
    print(f"\n{args.shape}, full fine-tuning, beta {args.beta:g}, {args.dtype} weights, {args.optimizer}, sampler "
          f"{args.rollout_dtype}, 2 prompts of {args.prompt_tokens} "
          f"tokens x {GROUP} x {args.tokens} tokens, {args.steps} step(s); MiB over each process's RSS after imports\n")
    print(table(records))
    ratio = peak_ratio(records)
    print(f"\nper-rank peak: 1 process {ratio['one_process_mib']} MiB, 2 processes (largest rank) "
          f"{ratio['two_processes_max_rank_mib']} MiB, ratio {ratio['ratio']}", flush=True)
    if args.out:
        write_json(args.out, {"machine": machine_info(), "args": vars(args), "records": records, "peak": ratio})


if __name__ == "__main__":
    main()
