"""Evaluation wiring by value: a reward exactly at the success threshold counts, per-problem pass@k uses its k."""

import pytest

from groupwise.data.prompts import render_prompts
from groupwise.data.source import load_rows
from groupwise.evaluate.accuracy import evaluate_rows
from groupwise.evaluate.heldout_eval import evaluate_passk, problem_record
from groupwise.rewards.compute import configured_rewards

# format_regex with an empty pattern matches every completion: each scores exactly its weight
EXACT = "rewards.functions=[{name: format_regex, weight: 0.5, params: {pattern: ''}}]"


def test_reward_exactly_at_the_threshold_is_a_success(tiny, tiny_config):
    model, tokenizer = tiny
    for threshold, expected in ((0.5, 1.0), (0.5000001, 0.0)):
        cfg = tiny_config(EXACT, f"algorithm.success_threshold={threshold}", "eval.samples=2")
        rows = load_rows(cfg.data, "heldout")[:3]
        texts, rewards = render_prompts(rows, tokenizer, cfg.data), configured_rewards(cfg)
        assert evaluate_rows(model, tokenizer, rows, texts, rewards, cfg)["greedy_accuracy"] == expected
        summary = evaluate_passk(model, tokenizer, rows, texts, rewards, cfg, samples=2, ks=[1, 2])
        assert summary["greedy_accuracy"] == expected and summary["pass@1"] == expected
        assert summary["pass@2"] == expected and summary["mean_pass_rate"] == expected


def test_per_problem_pass_at_k_uses_each_k():
    row = {"prompt": "What is 1 + 1?", "answer": "2"}
    sampled = {"n": 4, "correct": 1, "mean_reward": 0.25, "rewards": {"f": 0.25}}
    record = problem_record(row, {"correct": False}, sampled, [1, 2, 3, 4, 8])
    # 1 - C(n - c, k) / C(n, k) with n = 4, c = 1: 1 - 3/4, 1 - 3/6, 1 - 1/4, 1 - 0; k = 8 > n is left out
    assert record["pass@k"] == pytest.approx({"1": 0.25, "2": 0.5, "3": 0.75, "4": 1.0})
    assert record["pass_rate"] == 0.25 and record["n"] == 4 and record["correct"] == 1
