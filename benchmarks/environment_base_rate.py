"""How often the base model's answers in the `python_tool` environment are tool calls, and how often they are right.

    python benchmarks/environment_base_rate.py --problems 16 --samples 4 [--digits 3] [--no-example]

Samples `--samples` episodes for each of `--problems` held-out arithmetic problems (products of `--digits`-digit
numbers) with the configured sampler (fast engine, temperature 1), and greedy ones, and counts: first turns with a
well-formed `<tool_call>` to `python`, episodes that used the tool and answered right, and right answers overall.
docs/environments.md records the measured rates.
"""

from __future__ import annotations

import argparse
import time

from groupwise.config.load import build_config
from groupwise.data.prompts import render_prompts
from groupwise.data.source import load_rows
from groupwise.environments.registry import configured_environment
from groupwise.models.load import load_configured_model
from groupwise.rewards.compute import configured_rewards
from groupwise.rewards.rollout_scores import score_rollout
from groupwise.rollout.episodes.tool_calls import parse_tool_calls
from groupwise.rollout.sampler import Sampler


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--problems", type=int, default=16)
    parser.add_argument("--samples", type=int, default=4)
    parser.add_argument("--digits", type=int, default=3)
    parser.add_argument("--no-example", action="store_true")
    parser.add_argument("--max-new-tokens", type=int, default=48)
    args = parser.parse_args()
    task = f"{{digits: {args.digits}, operators: '*', max_operand: null}}"
    cfg = build_config(None, ["environment.name=python_tool", f"environment.params={{example: {not args.no_example}}}",
                              "environment.max_turns=2", f"rollout.max_new_tokens={args.max_new_tokens}",
                              "data.task=arithmetic", f"data.task_params={task}"])
    model, tokenizer = load_configured_model(cfg)
    rows = load_rows(cfg.data, "heldout")[: args.problems]
    sampler = Sampler(model, cfg.rollout, environment=configured_environment(cfg))
    rewards = configured_rewards(cfg)
    for label, greedy, group in (("sampled", False, args.samples), ("greedy", True, 1)):
        tick = time.perf_counter()
        rollout = sampler(tokenizer, render_prompts(rows, tokenizer, cfg.data), group_size=group, greedy=greedy,
                          keys=list(range(len(rows))), rows=rows)
        right = score_rollout(rollout, rows, [""] * len(rows), rewards, cfg, shaping=False).total.tolist()
        log = rollout.episodes
        first = [log.messages[i][log.first_reply[i]]["content"] for i in range(len(right))]
        shaped = [any(c.name == "python" and c.error is None for c in parse_tool_calls(text)) for text in first]
        used_and_right = sum(s and r >= 1 for s, r in zip(shaped, right, strict=True))
        print(f"{label}: {len(right)} episodes, tool-call shaped first turns {sum(shaped)}, used the tool and "
              f"right {used_and_right}, right {sum(r >= 1 for r in right)} ({time.perf_counter() - tick:.0f} s)")
        print("  e.g.", repr(first[0][:120]))


if __name__ == "__main__":
    main()
