"""Train the embedded default model (SmolLM2-135M) from Python on additions, with a reward written here.

Usage: .venv/bin/python examples/python_api.py [--steps 15] [--run-dir runs/python-api] [--set train.threads=1]
Everything goes through the public API: rows built in Python, two reward callables with TRL's signature,
on_step progress, then held-out greedy accuracy and pass@k of the base and the trained model.
"""

from __future__ import annotations

import argparse
import random
import re
from pathlib import Path
from typing import Any

import groupwise


def addition_rows(count: int, seed: int) -> list[dict[str, Any]]:
    """Problems 'What is a + b?' with a, b in 0..20 and the sum as the answer."""
    rng = random.Random(seed)
    pairs = [(rng.randint(0, 20), rng.randint(0, 20)) for _ in range(count)]
    return [{"prompt": f"What is {a} + {b}?", "answer": str(a + b)} for a, b in pairs]


def correct_sum(prompts, completions, answer, **kwargs) -> list[float]:
    """1.0 when the last number in the completion is the answer (a reward with TRL's signature)."""
    out = []
    for text, expected in zip(completions, answer, strict=True):
        numbers = re.findall(r"-?\d+", text)
        out.append(1.0 if numbers and numbers[-1] == expected else 0.0)
    return out


def brief(prompts, completions, **kwargs) -> list[float]:
    """A small bonus for answers under 40 characters."""
    return [1.0 if len(text) < 40 else 0.0 for text in completions]


def main(overrides: list[str], steps: int, run_dir: Path, problems: int = 50, samples: int = 4) -> dict[str, Any]:
    """Train, then evaluate base and trained model on the same held-out rows; returns both summaries."""
    train_rows, heldout_rows = addition_rows(400, seed=0), addition_rows(problems, seed=1)
    settings = [f"train.steps={steps}", "eval.before_after=false", "log.progress=false", *overrides]

    def progress(step: int, metrics: dict[str, Any]) -> None:
        print(f"step {step}: reward {metrics['reward/mean']:.3f}, correct {metrics['reward/correct_sum/mean']:.3f}",
              flush=True)

    run = groupwise.train(None, settings, dataset=train_rows, heldout=heldout_rows, rewards=[correct_sum, brief],
                          reward_weights=[1.0, 0.1], run_dir=run_dir, overwrite=True, on_step=progress)
    ks = [k for k in (1, 4) if k <= samples]
    base = groupwise.evaluate(run.config.model.name, heldout_rows, rewards=[correct_sum], samples=samples, k=ks,
                              overrides=settings)
    trained = groupwise.evaluate(run, heldout_rows, rewards=[correct_sum], samples=samples, k=ks)
    for label, result in (("base", base), ("trained", trained)):
        passes = ", ".join(f"pass@{k} {100 * result[f'pass@{k}']:.1f}%" for k in ks)
        print(f"{label}: greedy {100 * result['greedy_accuracy']:.1f}%, {passes}")
    return {"base": base, "trained": trained, "run": run}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=15)
    parser.add_argument("--run-dir", type=Path, default=Path("runs/python-api"))
    parser.add_argument("--problems", type=int, default=50)
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="section.key=value")
    args = parser.parse_args()
    main(args.overrides, args.steps, args.run_dir, args.problems)
