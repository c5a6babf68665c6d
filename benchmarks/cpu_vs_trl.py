"""CPU side by side: groupwise vs TRL's GRPOTrainer on trl_cpu_anchor.py's workload, one process per system.

SmolLM2-135M-Instruct, two-digit additions, rewards `correct` (tagged answer) + `fmt` (0.2 for the tags),
LoRA r16 alpha 32 all-linear, 4 prompts x 8 completions, 64 completion tokens, beta 0.04, lr 2e-4, 2 threads.

Run: ``.venv/bin/python benchmarks/cpu_vs_trl.py [--steps 4] [--systems groupwise,groupwise-async,trl,trl-fp32]
[--groupwise-set k=v] [--out results.json]``. Prints the machine, one JSON line per system, ratio lines and a
markdown table.

The systems: `groupwise` (its defaults: bf16 only where the CPU computes it fast), `groupwise-async` (the same
with rollout.max_staleness 1: sampling the next batch while the trainer updates, the threads split between them),
`trl` (GRPOConfig's defaults) and `trl-fp32` (bf16=False). On a CPU without AVX512-BF16 or AMX, TRL's defaults
autocast to bf16 in emulation (its first step took 552 s on such a CPU, 2026-12): the `trl-fp32` row is what a
TRL user of that CPU would run, and the fair peer there; on a CPU with fast bf16 both rows are fair.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import (
    ChildResult,
    child_env,
    emit,
    failed,
    groupwise_columns,
    machine_info,
    median_steady,
    phase_cells,
    phase_shares,
    ratio,
    report,
    results_table,
    rounded,
    run_child,
    steady,
    write_json,
)

SYSTEM = "Answer with the final number inside <answer></answer> tags."
PROMPTS, GROUP, COMPLETION = 4, 8, 64
LEARNING_RATE, BETA, TEMPERATURE = 2e-4, 0.04, 1.0
LORA_R, LORA_ALPHA = 16, 32
SYSTEMS = ("groupwise", "groupwise-async", "trl", "trl-fp32")
PEERS = ("trl", "trl-fp32")


def make_rows(n: int, seed: int) -> list[dict[str, Any]]:
    """The anchor's rows: `n` chat prompts "What is a + b?", a and b in 10..99 from Random(seed)."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        a = rng.randint(10, 99)
        b = rng.randint(10, 99)
        messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": f"What is {a} + {b}?"}]
        rows.append({"prompt": messages, "answer": str(a + b)})
    return rows


def _text(completion: Any) -> str:
    """A TRL completion as text: conversational ones arrive as a list holding one assistant message."""
    return completion[0]["content"] if isinstance(completion, list) else completion


def correct(completions: list[Any], answer: list[str], **_: Any) -> list[float]:
    """1.0 when the first <answer>N</answer> holds exactly the expected integer (the anchor's reward)."""
    scores = []
    for completion, expected in zip(completions, answer, strict=True):
        found = re.search(r"<answer>\s*(-?\d+)\s*</answer>", _text(completion))
        scores.append(1.0 if found is not None and found.group(1) == expected else 0.0)
    return scores


def fmt(completions: list[Any], **_: Any) -> list[float]:
    """0.2 when the completion has an <answer>...</answer> pair (the anchor's format reward)."""
    return [0.2 if re.search(r"<answer>.*?</answer>", _text(c), re.S) else 0.0 for c in completions]


def default_model_path() -> str:
    """The dequantized SmolLM2-135M-Instruct folder groupwise caches (made on first use)."""
    from groupwise.models.load import default_cache_dir, resolve_model_path

    return str(resolve_model_path("smollm2-135m", None, default_cache_dir()))


# ---- the TRL child -----------------------------------------------------------------------------------------


def run_trl(model: str, steps: int, threads: int, name: str = "trl") -> None:
    """TRL GRPOTrainer with the anchor's GRPOConfig on CPU (`trl-fp32`: bf16 off); reports per-step wall times
    and logged metrics."""
    import torch

    torch.set_num_threads(threads)
    import trl
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoTokenizer, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    class StepClock(TrainerCallback):
        """Wall time of each optimizer step (generation included) and the metrics TRL logs for it."""

        def __init__(self) -> None:
            self.started = 0.0
            self.step_s: list[float] = []
            self.logs: list[dict[str, float]] = []

        def on_step_begin(self, args, state, control, **kwargs) -> None:
            self.started = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs) -> None:
            self.step_s.append(time.perf_counter() - self.started)

        def on_log(self, args, state, control, logs=None, **kwargs) -> None:
            if logs and "reward" in logs:
                self.logs.append(dict(logs))

    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(model)
    dataset = Dataset.from_list(make_rows(PROMPTS * steps * 2, 0))
    with tempfile.TemporaryDirectory(prefix="bench-trl-") as out:
        args = GRPOConfig(output_dir=out, per_device_train_batch_size=PROMPTS * GROUP,
                          gradient_accumulation_steps=1, num_generations=GROUP,
                          max_completion_length=COMPLETION, beta=BETA, max_steps=steps, logging_steps=1,
                          report_to="none", save_strategy="no", learning_rate=LEARNING_RATE, use_vllm=False,
                          temperature=TEMPERATURE, use_cpu=True, **({"bf16": False} if name == "trl-fp32" else {}))
        lora = LoraConfig(r=LORA_R, lora_alpha=LORA_ALPHA, target_modules="all-linear", task_type="CAUSAL_LM")
        trainer = GRPOTrainer(model=model, reward_funcs=[correct, fmt], args=args, train_dataset=dataset,
                              processing_class=tokenizer, peft_config=lora)
        clock = StepClock()
        trainer.add_callback(clock)
        trainer.train()
    logs = clock.logs
    report({"system": name, "version": trl.__version__, "threads": torch.get_num_threads(),
            "settings": {"bf16": args.bf16, "gradient_checkpointing": args.gradient_checkpointing,
                         "model_dtype": str(next(trainer.model.parameters()).dtype)},
            "step_s": [round(s, 3) for s in clock.step_s],
            "completion_len": [log.get("completions/mean_length") for log in logs],
            "reward": [log.get("reward") for log in logs],
            "correct": [log.get("rewards/correct/mean") for log in logs],
            "frac_reward_zero_std": [log.get("frac_reward_zero_std") for log in logs]})


# ---- the groupwise child -----------------------------------------------------------------------------------


def groupwise_config(data_path: Path, model: str, steps: int, threads: int) -> dict[str, Any]:
    """The groupwise job matching the anchor: same rows, rewards, LoRA, group shape and optimizer settings."""
    return {
        "model": {"name": model},
        "lora": {"enabled": True, "r": LORA_R, "alpha": LORA_ALPHA, "dropout": 0.0,
                 "target_modules": "all-linear"},
        "data": {"task": None, "path": str(data_path), "heldout_fraction": 0.0, "seed": 0},
        "rewards": {"functions": [
            {"name": "answer_match", "weight": 1.0, "params": {"extract": "tag", "numeric": False}},
            {"name": "format_regex", "weight": 1.0,
             "params": {"pattern": "<answer>.*?</answer>", "score": 0.2}},
        ]},
        "algorithm": {"preset": "grpo", "beta": BETA},
        "rollout": {"prompts_per_step": PROMPTS, "group_size": GROUP, "max_new_tokens": COMPLETION,
                    "temperature": TEMPERATURE},
        "train": {"steps": steps, "learning_rate": LEARNING_RATE, "micro_batch_size": PROMPTS * GROUP,
                  "threads": threads, "seed": 0},
        "eval": {"before_after": False},
        "log": {"progress": False},
    }


def async_overrides(threads: int) -> list[str]:
    """groupwise-async: a producer a step ahead, the threads split between it and the trainer."""
    producer = max(1, threads // 2)
    return ["rollout.max_staleness=1", f"rollout.threads={producer}", f"train.threads={max(1, threads - producer)}"]


def run_groupwise(model: str, steps: int, threads: int, overrides: list[str], name: str = "groupwise") -> None:
    """groupwise's `train` on the same rows; reports its per-step timings from metrics.jsonl."""
    import torch
    import yaml

    import groupwise
    from groupwise.config.load import build_config
    from groupwise.models.precision import cpu_has_fast_bf16
    from groupwise.train.loop import training_loop

    with tempfile.TemporaryDirectory(prefix="bench-groupwise-") as tmp:
        data_path = Path(tmp) / "rows.jsonl"
        data_path.write_text("".join(json.dumps(row) + "\n" for row in make_rows(PROMPTS * steps * 2, 0)))
        config_path = Path(tmp) / "config.yaml"
        config = groupwise_config(data_path, model, steps, threads)
        config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        overrides = overrides + (async_overrides(threads) if name == "groupwise-async" else [])
        cfg = build_config(config_path, overrides)
        training_loop(cfg, Path(tmp) / "run")
        columns = groupwise_columns(Path(tmp) / "run", reward="reward/mean", correct="reward/answer_match/mean",
                                    learnable_fraction="learnable_fraction")

    report({"system": name, "version": getattr(groupwise, "__version__", "?"),
            "threads": torch.get_num_threads(), "overrides": overrides,
            "settings": {"model_dtype": cfg.model.dtype, "rollout_engine": cfg.rollout.engine,
                         "rollout_dtype": cfg.rollout.dtype, "train_bf16": cfg.train.bf16,
                         "gradient_checkpointing": cfg.model.gradient_checkpointing,
                         "cpu_fast_bf16": cpu_has_fast_bf16()},
            **columns})


# ---- the parent --------------------------------------------------------------------------------------------


def summarize(child: ChildResult, name: str) -> dict[str, Any]:
    """One system's result line: steady-step median, peak RSS, throughput and (groupwise) phase shares."""
    if error := failed(child, name):
        return error
    record = child.record
    step_s = record["step_s"]
    tokens = [PROMPTS * GROUP * (length or 0.0) for length in record["completion_len"]]
    steady_tokens, steady_steps = sum(steady(tokens)), sum(steady(step_s))
    out = {"system": name, "version": record["version"], "steps": len(step_s),
           "median_step_s": rounded(median_steady(step_s)), "step_s": step_s,
           "peak_rss_mib": round(child.peak_rss_mib),
           "gen_tokens_per_s": rounded(steady_tokens / steady_steps, 1) if steady_steps else None,
           "completion_len_mean": rounded(steady_tokens / (PROMPTS * GROUP) / max(len(steady(tokens)), 1), 1),
           "reward": record["reward"], "correct": record["correct"], "threads": record["threads"],
           "settings": record["settings"], "wall_s": round(child.wall_s, 1)}
    if name.startswith("groupwise"):
        generate = sum(steady(record["generate_s"]))
        out["gen_only_tokens_per_s"] = rounded(steady_tokens / generate, 1) if generate else None
        out["share"] = phase_shares(record)
        out["overrides"] = record["overrides"]
    else:
        out["frac_reward_zero_std"] = record["frac_reward_zero_std"]
    return out


def table(results: list[dict[str, Any]]) -> str:
    """The markdown summary of the systems that ran."""
    headers = ["system", "s/step (median, steps 2..n)", "peak RSS MiB", "gen tok/s (step wall)",
               "gen tok/s (generation only)", "generate", "ref+old logprobs", "update", "reward", "mean len"]
    return results_table(headers, results, lambda r: [r["median_step_s"], r["peak_rss_mib"], r["gen_tokens_per_s"],
                                                      r.get("gen_only_tokens_per_s"), *phase_cells(r),
                                                      r["completion_len_mean"]])


def compare(gw: dict[str, Any], peer: dict[str, Any]) -> dict[str, Any]:
    """TRL / groupwise for time and memory, groupwise / TRL for throughput: above 1 favours groupwise."""
    return {"ratio": {"groupwise": gw["system"], "peer": peer["system"],
                      "step_s_trl_over_groupwise": ratio(peer.get("median_step_s"), gw.get("median_step_s")),
                      "peak_rss_trl_over_groupwise": ratio(peer.get("peak_rss_mib"), gw.get("peak_rss_mib")),
                      "gen_tokens_per_s_groupwise_over_trl": ratio(gw.get("gen_tokens_per_s"),
                                                                   peer.get("gen_tokens_per_s"))}}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=4, help="steps per system (the first is warm-up)")
    parser.add_argument("--systems", default="groupwise,trl,trl-fp32",
                        help=f"comma-separated, in order, from {', '.join(SYSTEMS)}")
    parser.add_argument("--only", choices=SYSTEMS, help="run one system only (same as --systems NAME)")
    parser.add_argument("--groupwise-set", action="append", default=[], metavar="KEY=VALUE",
                        help="extra groupwise override, repeatable (e.g. train.bf16=false)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads for both systems")
    parser.add_argument("--model", help="model folder (default: groupwise's dequantized SmolLM2-135M)")
    parser.add_argument("--out", help="also write every result to this JSON file")
    parser.add_argument("--worker", choices=SYSTEMS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.steps < 1:
        parser.error("--steps must be at least 1")
    args.systems = args.only or args.systems
    if unknown := set(args.systems.split(",")) - set(SYSTEMS):
        parser.error(f"unknown system(s) {', '.join(sorted(unknown))}: use {', '.join(SYSTEMS)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker in PEERS:
        run_trl(args.model, args.steps, args.threads, args.worker)
        return 0
    if args.worker:
        run_groupwise(args.model, args.steps, args.threads, args.groupwise_set, args.worker)
        return 0
    model = args.model or default_model_path()
    header = {"machine": machine_info(),
              "workload": {"model": model, "prompts": PROMPTS, "group": GROUP, "completion": COMPLETION,
                           "beta": BETA, "lr": LEARNING_RATE, "lora_r": LORA_R, "lora_alpha": LORA_ALPHA,
                           "steps": args.steps, "threads": args.threads, "groupwise_set": args.groupwise_set}}
    emit(header)
    results: dict[str, dict[str, Any]] = {}
    for name in args.systems.split(","):
        cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", name, "--steps", str(args.steps),
               "--threads", str(args.threads), "--model", model]
        cmd += [item for override in args.groupwise_set for item in ("--groupwise-set", override)]
        results[name] = summarize(run_child(cmd, child_env(args.threads)), name)
        emit(results[name])
    comparisons = [compare(results[gw], results[peer]) for gw in results if gw.startswith("groupwise")
                   for peer in results if peer in PEERS]
    for comparison in comparisons:
        emit(comparison)
    print("\n" + table(list(results.values())))
    if args.out:
        write_json(args.out, header | {"results": list(results.values()), "ratios": comparisons})
    return 1 if any("error" in r for r in results.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
