"""Train the default task with the GRPO family (presets and F-GRPO) under one budget; compare held-out pass@k.

Usage: .venv/bin/python examples/compare_variants.py --steps 15 --problems 100 --samples 16
Prints a markdown table (pass@1/4/16 with 16 samples, greedy accuracy, training minutes) and writes
OUT/variants.json. Every variant gets the same steps, prompts and seed; DAPO's dynamic sampling may draw
extra rollouts within a step (its rounds are part of the method), so its wall time is reported too.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from groupwise.config.load import build_config
from groupwise.data.prompts import render_prompts
from groupwise.data.source import load_rows
from groupwise.evaluate.heldout_eval import evaluate_passk
from groupwise.models.load import load_configured_model
from groupwise.models.trained import load_trained
from groupwise.rewards.compute import configured_rewards
from groupwise.train.loop import training_loop

VARIANTS: dict[str, list[str]] = {
    "grpo": ["algorithm.preset=grpo"],
    "dr_grpo": ["algorithm.preset=dr_grpo"],
    "dapo": ["algorithm.preset=dapo"],
    "cispo": ["algorithm.preset=cispo"],
    "f-grpo (gamma 0.5)": ["algorithm.preset=grpo", "algorithm.focal_gamma=0.5"],
    "f-grpo (gamma 1.0)": ["algorithm.preset=grpo", "algorithm.focal_gamma=1.0"],
    "rloo": ["algorithm.preset=rloo"],
    "reinforce_pp": ["algorithm.preset=reinforce_pp"],
}
KS = [1, 4, 16]


def evaluate(model, tokenizer, cfg, problems: int, samples: int) -> dict:
    rows = load_rows(cfg.data, "heldout")[:problems]
    rewards = configured_rewards(cfg)
    return evaluate_passk(model, tokenizer, rows, render_prompts(rows, tokenizer, cfg.data), rewards, cfg,
                          samples=samples, ks=[k for k in KS if k <= samples])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=15)
    parser.add_argument("--problems", type=int, default=100)
    parser.add_argument("--samples", type=int, default=16)
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--only", nargs="*", help="variant names to run (default: all)")
    parser.add_argument("--out", type=Path, default=Path("runs/variants"))
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="extra section.key=value")
    args = parser.parse_args()
    common = [f"model.name={args.model}", f"train.steps={args.steps}", "eval.before_after=false",
              "log.progress=false", *args.overrides]
    results = {}
    base_cfg = build_config(None, common)
    model, tokenizer = load_configured_model(base_cfg)
    results["base model"] = evaluate(model.eval(), tokenizer, base_cfg, args.problems, args.samples)
    for name in args.only or VARIANTS:
        cfg = build_config(None, common + VARIANTS[name])
        run_dir = args.out / name.replace(" ", "_").replace("(", "").replace(")", "")
        started = time.perf_counter()
        training_loop(cfg, run_dir)
        minutes = (time.perf_counter() - started) / 60
        trained, tokenizer, cfg = load_trained(run_dir)
        results[name] = evaluate(trained, tokenizer, cfg, args.problems, args.samples) | {"minutes": minutes}
        print(json.dumps({name: results[name]}), flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "variants.json").write_text(json.dumps(results, indent=2))
    print(table(results, args))


def table(results: dict, args) -> str:
    ks = [k for k in KS if k <= args.samples]
    head = "| variant | " + " | ".join(f"pass@{k}" for k in ks) + " | greedy | train min |"
    lines = [head, "|" + "---|" * (len(ks) + 3)]
    for name, r in results.items():
        passes = " | ".join(f"{100 * r[f'pass@{k}']:.1f}" for k in ks)
        minutes = f"{r['minutes']:.1f}" if "minutes" in r else "-"
        lines.append(f"| {name} | {passes} | {100 * r['greedy_accuracy']:.1f} | {minutes} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
