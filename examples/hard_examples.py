"""A small replication of "Hard Examples Are All You Need" (arXiv 2508.14094) on built-in arithmetic.

1. Estimate every pool example's pass rate with the base model (K samples at temperature 1).
2. Keep the hardest, easiest and a random slice (same size each).
3. GRPO-train one run per slice with the same steps and seed.
4. Compare held-out greedy accuracy gains in a markdown table.

Full size (slow on CPU: a real-model step takes ~30-60 s):
    python examples/hard_examples.py --out runs/hard-examples
Smoke test:
    python examples/hard_examples.py --model tiny-random --pool 16 --samples 2 --steps 1 --heldout 4 \
        --fraction 0.25 --group-size 2 --prompts-per-step 2 --max-new-tokens 4 --out /tmp/hard-smoke
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path
from typing import Any

from rich.console import Console

from groupwise.config.load import build_config
from groupwise.config.schema import Config
from groupwise.data.prompts import render_prompts
from groupwise.data.source import load_rows
from groupwise.evaluate.accuracy import evaluate_rows
from groupwise.evaluate.heldout_eval import unique_rows
from groupwise.evaluate.selection import Strategy, estimate_pass_rates, select_indices, write_selection
from groupwise.models.load import load_configured_model
from groupwise.models.trained import load_trained
from groupwise.rewards.compute import configured_rewards
from groupwise.train.loop import training_loop


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="smollm2-135m", help="base model (smollm2-135m, tiny-random, a path)")
    p.add_argument("--pool", type=int, default=400, help="training pool size the slices are taken from")
    p.add_argument("--samples", type=int, default=8, help="K samples per example for the pass rate")
    p.add_argument("--fraction", type=float, default=0.1, help="share of the pool in each slice")
    p.add_argument("--strategies", default="hardest,easiest,random", help="slices to compare")
    p.add_argument("--steps", type=int, default=30, help="GRPO steps per run (equal for every slice)")
    p.add_argument("--heldout", type=int, default=200, help="held-out problems for greedy accuracy")
    p.add_argument("--max-operand", type=int, default=20, help="arithmetic operands are 0..max_operand")
    p.add_argument("--group-size", type=int, default=8)
    p.add_argument("--prompts-per-step", type=int, default=8)
    p.add_argument("--max-new-tokens", type=int, default=24)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--set", dest="overrides", action="append", default=[], help="extra config override k=v")
    p.add_argument("--out", type=Path, default=Path("runs/hard-examples"))
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    return p.parse_args(argv)


def base_overrides(args: argparse.Namespace) -> list[str]:
    completions = args.group_size * args.prompts_per_step
    return [
        f"model.name={json.dumps(args.model)}", "data.task=arithmetic",
        f"data.task_params={{max_operand: {args.max_operand}, operators: '+', heldout_share: 0.5}}",
        f"data.train_size={args.pool}", f"data.heldout_size={args.heldout}", f"data.seed={args.seed}",
        f"rollout.group_size={args.group_size}", f"rollout.prompts_per_step={args.prompts_per_step}",
        f"rollout.max_new_tokens={args.max_new_tokens}", f"train.steps={args.steps}",
        f"train.seed={args.seed}",
        f"train.micro_batch_size={min(16, completions)}", "eval.before_after=false", "eval.samples=0",
        f"eval.num_problems={args.heldout}", f"log.progress={str(not args.quiet).lower()}",
    ] + args.overrides


def slice_config(overrides: list[str], data_file: Path, heldout_file: Path) -> Config:
    """Train on one selected slice; evaluate on the shared held-out file."""
    return build_config(None, overrides + ["data.task=null", f"data.path={json.dumps(str(data_file))}",
                                           f"data.heldout_path={json.dumps(str(heldout_file))}",
                                           "data.task_params={}", "data.train_size=null"])


def heldout_accuracy(model, tokenizer, rows, cfg: Config, rewards) -> float:
    return evaluate_rows(model, tokenizer, rows, render_prompts(rows, tokenizer, cfg.data), rewards, cfg,
                         samples=0)["greedy_accuracy"]


def write_rows(path: Path, rows: list[dict[str, Any]]) -> None:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))


def run(args: argparse.Namespace, console: Console) -> list[dict[str, Any]]:
    args.out.mkdir(parents=True, exist_ok=True)
    overrides = base_overrides(args)
    cfg = build_config(None, overrides)
    rewards = configured_rewards(cfg)
    pool, heldout = load_rows(cfg.data, "train"), unique_rows(load_rows(cfg.data, "heldout"))
    heldout_file = args.out / "heldout.jsonl"
    write_rows(heldout_file, heldout)
    model, tokenizer = load_configured_model(cfg)
    model.eval()
    console.print(f"estimating pass rates of {len(pool)} pool examples with {args.samples} samples each")
    rates = estimate_pass_rates(lambda: (model, tokenizer, lambda rows: render_prompts(rows, tokenizer, cfg.data)),
                                pool, cfg, rewards, model_name=cfg.model.name, samples=args.samples,
                                path=args.out / "difficulty.jsonl")
    base = heldout_accuracy(model, tokenizer, heldout, cfg, rewards)
    console.print(f"base held-out greedy accuracy: {100 * base:.1f}% ({len(heldout)} problems)")
    results = []
    for name in args.strategies.split(","):
        indices = select_indices(rates, Strategy(name, args.fraction), seed=args.seed)
        data_file = args.out / f"{name}.jsonl"
        write_selection(data_file, pool, rates, indices)
        run_dir = args.out / "runs" / name
        shutil.rmtree(run_dir, ignore_errors=True)  # a rerun retrains; the difficulty file is reused
        console.print(f"training on {name} ({len(indices)} examples) for {args.steps} steps -> {run_dir}")
        training_loop(slice_config(overrides, data_file, heldout_file), run_dir, console=console)
        trained, trained_tokenizer, run_cfg = load_trained(run_dir)
        accuracy = heldout_accuracy(trained, trained_tokenizer,
                                    heldout, run_cfg, rewards)
        kept = [rates[i] for i in indices]
        results.append({"strategy": name, "examples": len(indices), "mean_pass_rate": sum(kept) / len(kept),
                        "base_accuracy": base, "trained_accuracy": accuracy,
                        "gain_points": round(100 * (accuracy - base), 1)})
    (args.out / "results.json").write_text(json.dumps(results, indent=2))
    return results


def markdown_table(results: list[dict[str, Any]], args: argparse.Namespace) -> str:
    lines = [f"model {args.model}, pool {args.pool}, K={args.samples}, {args.steps} steps, "
             f"{args.heldout} held-out problems", "",
             "| slice | examples | mean pass rate | base acc | trained acc | gain (points) |",
             "|---|---:|---:|---:|---:|---:|"]
    for r in results:
        lines.append(f"| {r['strategy']} | {r['examples']} | {r['mean_pass_rate']:.3f} | "
                     f"{100 * r['base_accuracy']:.1f}% | {100 * r['trained_accuracy']:.1f}% | "
                     f"{r['gain_points']:+.1f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    results = run(args, Console(stderr=True))
    print(markdown_table(results, args))


if __name__ == "__main__":
    main()
