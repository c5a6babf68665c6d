"""Memory per rank of full fine-tuning: replicated against FSDP2-sharded, policy + reference + AdamW state.

    .venv/bin/python benchmarks/fsdp_memory.py [--hidden 512 --layers 8]

A random Llama (the tiny-random architecture, wider and deeper) is trained for two AdamW steps on random tokens
by 1 process and by 2 gloo processes, replicated (every rank holds everything, as LoRA's frozen base is) or sharded
with groupwise's `shard_model` (the reference sharded the same way). Per rank it reports the bytes of parameters
and optimizer state held (local shards), and the resident set over the process's state after imports: after the
steps (with freed memory handed back, `malloc_trim`) and at its high-water mark, which includes loading the whole
model on every rank before it is sharded (groupwise loads the checkpoint whole, then shards). It measures the
trainer's state only: the rollout engine's gathered copy (one whole model, in rollout.dtype) comes on top in a
real run.
"""

from __future__ import annotations

import argparse
import copy
import ctypes
import json
import os
import resource
import subprocess
import sys

import torch
import torch.distributed as dist


def local_bytes(tensors) -> int:
    from torch.distributed.tensor import DTensor

    return sum((t.to_local() if isinstance(t, DTensor) else t).numel() * t.element_size() for t in tensors)


def worker(mode: str, hidden: int, layers: int) -> dict[str, float]:
    from groupwise.models.tiny import build_tiny_random
    from groupwise.train.fsdp import shard_model

    if "WORLD_SIZE" in os.environ:
        dist.init_process_group("gloo")
    torch.set_num_threads(1)
    before = current_rss_mib()
    model, _ = build_tiny_random(hidden=hidden, layers=layers)
    reference = copy.deepcopy(model).requires_grad_(False)
    if mode == "fsdp":
        model, reference = shard_model(model, bf16=False), shard_model(reference, bf16=False)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    tokens = torch.randint(3, 60, (4, 64), generator=torch.Generator().manual_seed(0))
    for _ in range(2):
        with torch.no_grad():
            reference(input_ids=tokens)
        model(input_ids=tokens).logits.float().logsumexp(-1).mean().backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    state = [v for s in optimizer.state.values() for v in s.values() if torch.is_tensor(v) and v.dim() > 0]
    return {"params_mib": local_bytes(model.parameters()) / 2**20,
            "reference_mib": local_bytes(reference.parameters()) / 2**20,
            "adam_mib": local_bytes(state) / 2**20,
            "steady_mib": current_rss_mib() - before,
            "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - before}


def current_rss_mib() -> float:
    """This process's resident set now, after glibc hands freed memory back to the system."""
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        row = worker(args.worker, args.hidden, args.layers)
        rows = [None] * int(os.environ.get("WORLD_SIZE", "1"))
        if dist.is_initialized():
            dist.all_gather_object(rows, row)
        else:
            rows = [row]
        if int(os.environ.get("RANK", "0")) == 0:
            print(json.dumps({k: max(r[k] for r in rows) for k in row}))
        return
    print("| layout | params MiB/rank | reference MiB/rank | AdamW MiB/rank | RSS after steps MiB/rank | "
          "peak RSS MiB/rank |")
    print("|---|---|---|---|---|---|")
    env = os.environ | {"OMP_NUM_THREADS": "1"}
    for name, nproc, mode in (("1 process", 1, "replicated"), ("2 processes, replicated", 2, "replicated"),
                              ("2 processes, FSDP2", 2, "fsdp")):
        script = [__file__, "--worker", mode, "--hidden", str(args.hidden), "--layers", str(args.layers)]
        launch = ["-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}"] if nproc > 1 else []
        out = subprocess.run([sys.executable, *launch, *script], check=True, capture_output=True, text=True,
                             env=env).stdout
        row = json.loads(out.strip().splitlines()[-1])
        print(f"| {name} | {row['params_mib']:.0f} | {row['reference_mib']:.0f} | {row['adam_mib']:.0f} | "
              f"{row['steady_mib']:.0f} | {row['peak_mib']:.0f} |", flush=True)


if __name__ == "__main__":
    main()
