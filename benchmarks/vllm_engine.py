"""The default job with each rollout engine (fast, hf, vllm), one after another in one run: s/step and tokens/s.

Usage: .venv/bin/python benchmarks/vllm_engine.py [--steps 4] [--threads 2] [--engines fast,hf,vllm] [--out FILE]
Each engine trains the embedded default job (SmolLM2-135M, LoRA, additions) for --steps steps in a child process
of its own, float32 everywhere (vLLM's CPU build and the fast engine then decode the same model alike), and
reports the median over steps 2..n of the step and of generation alone, generated tokens per second of
generation, and the child's peak RSS. Ratios are against the fast engine, measured in the same run.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

from _common import (
    child_env,
    emit,
    failed,
    groupwise_columns,
    machine_info,
    median_steady,
    ratio,
    report,
    results_table,
    rounded,
    run_child,
    steady,
    write_json,
)

ENGINES = ("fast", "hf", "vllm")
FLOAT32 = ["model.dtype=float32", "rollout.dtype=float32", "train.bf16=false"]


def run_engine(engine: str, steps: int, threads: int) -> None:
    """The child: the default job for `steps` steps with `engine`; reports metrics.jsonl's timings."""
    from groupwise.config.load import build_config
    from groupwise.train.loop import training_loop

    overrides = [f"rollout.engine={engine}", f"train.steps={steps}", f"train.threads={threads}",
                 "eval.before_after=false", "log.progress=false", *FLOAT32]
    with tempfile.TemporaryDirectory(prefix="bench-engine-") as tmp:
        cfg = build_config(None, overrides)
        training_loop(cfg, Path(tmp) / "run")
        columns = groupwise_columns(Path(tmp) / "run", tokens_per_s="tokens_per_s", reward="reward/mean")
    report({"system": engine, "overrides": overrides,
            "completions_per_step": cfg.rollout.prompts_per_step * cfg.rollout.group_size, **columns})


def summarize(engine: str, child: Any) -> dict[str, Any]:
    if error := failed(child, engine):
        return error
    record = child.record
    tokens = [record["completions_per_step"] * (length or 0.0) for length in record["completion_len"]]
    generate = sum(steady(record["generate_s"]))
    return {"system": engine, "steps": len(record["step_s"]), "median_step_s": rounded(median_steady(record["step_s"])),
            "median_generate_s": rounded(median_steady(record["generate_s"])),
            "gen_tokens_per_s": rounded(sum(steady(tokens)) / generate, 1) if generate else None,
            "peak_rss_mib": round(child.peak_rss_mib), "step_s": record["step_s"],
            "generate_s": record["generate_s"], "reward": record["reward"], "wall_s": round(child.wall_s, 1)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=4, help="steps per engine (the first is warm-up)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--engines", default=",".join(ENGINES), help="comma-separated engines to run")
    parser.add_argument("--out", help="also write every result to this JSON file")
    parser.add_argument("--worker", choices=ENGINES, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return run_engine(args.worker, args.steps, args.threads)
    emit({"machine": machine_info()})
    results = []
    for engine in args.engines.split(","):
        child = run_child([sys.executable, __file__, "--worker", engine, "--steps", str(args.steps), "--threads",
                           str(args.threads)], env=child_env(args.threads))
        results.append(summarize(engine, child))
        emit(results[-1])
    fast = next((r for r in results if r["system"] == "fast" and "error" not in r), {})
    for result in results:
        result["step_s_over_fast"] = ratio(result.get("median_step_s"), fast.get("median_step_s"))
        result["gen_tokens_per_s_over_fast"] = ratio(result.get("gen_tokens_per_s"), fast.get("gen_tokens_per_s"))
    headers = ["engine", "s/step (median, steps 2..n)", "generate s", "gen tok/s", "s/step vs fast",
               "gen tok/s vs fast", "peak RSS MiB"]
    print(results_table(headers, results, lambda r: [r["median_step_s"], r["median_generate_s"],
                                                     r["gen_tokens_per_s"], r["step_s_over_fast"],
                                                     r["gen_tokens_per_s_over_fast"], r["peak_rss_mib"]]))
    if args.out:
        write_json(args.out, {"machine": machine_info(), "results": results})


if __name__ == "__main__":
    main()
