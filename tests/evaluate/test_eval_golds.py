"""eval's per-problem results record the gold each reward read beside the raw answer (issue 28)."""

from __future__ import annotations

from groupwise.config.schema import RewardSpec
from groupwise.data.prompts import render_prompts
from groupwise.evaluate.heldout_eval import score_problems
from groupwise.rewards.compute import build_reward_functions


def test_results_carry_the_gold_as_each_reward_read_it(tiny, tiny_config, one_thread):
    model, tokenizer = tiny
    cfg = tiny_config()
    rows = [{"prompt": "How many pencils are left?", "answer": "3 * 12 = 36; 36 - 7 = 29.\n#### 29"},
            {"prompt": "How much in total?", "answer": r"It is \boxed{1,234}."},
            {"prompt": "Which word?", "answer": "yes"}]
    rewards = build_reward_functions([RewardSpec(name="answer_match"), RewardSpec(name="format_regex", params={
        "pattern": "[0-9]"})])
    records = score_problems(model.eval(), tokenizer, rows, render_prompts(rows, tokenizer, cfg.data), rewards, cfg,
                             samples=2, ks=[1])
    assert [r["answer"] for r in records] == [row["answer"] for row in rows]  # the raw answer stays
    assert [r["gold"] for r in records] == [{"answer_match": "29"}, {"answer_match": "1234"},
                                            {"answer_match": "yes"}]
