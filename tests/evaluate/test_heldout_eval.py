"""pass@k evaluation: parsing, summaries, resumable per-problem results, baseline table, CLI."""

import json

import pytest
from rich.console import Console
from typer.testing import CliRunner

from groupwise.algorithms.passk import pass_at_k
from groupwise.cli.main import app
from groupwise.data.prompts import render_prompts
from groupwise.errors import GroupwiseError
from groupwise.evaluate import heldout_eval
from groupwise.evaluate.heldout_eval import (
    check_meta,
    evaluate_passk,
    parse_ks,
    read_results,
    results_table,
    summarize,
    unique_rows,
)
from groupwise.rewards.compute import configured_rewards

VOWEL_REWARD = 'rewards.functions=[{name: format_regex, params: {pattern: "[aeiou]"}}]'


def test_parse_ks():
    assert parse_ks("64,1,8,8") == [1, 8, 64]
    for bad in ("", "a,b", "0,1"):
        with pytest.raises(GroupwiseError):
            parse_ks(bad)


def test_summary_uses_unbiased_pass_at_k_and_skips_k_above_n():
    records = [{"greedy_correct": True, "n": 8, "correct": 2, "pass_rate": 0.25, "mean_reward": 0.25,
                "rewards": {"f": 0.25}},
               {"greedy_correct": False, "n": 8, "correct": 0, "pass_rate": 0.0, "mean_reward": 0.0,
                "rewards": {"f": 0.0}}]
    summary = summarize(records, [1, 4, 8, 64], samples=8)
    assert summary["greedy_accuracy"] == 0.5
    assert summary["pass@1"] == pytest.approx(0.125)
    assert summary["pass@4"] == pytest.approx(pass_at_k(8, 2, 4) / 2)
    assert summary["pass@8"] == pytest.approx(0.5) and "pass@64" not in summary
    assert summary["learnable_share"] == 0.5 and summary["sampled_reward_per_function"] == {"f": 0.125}
    baseline = summarize([records[0]] * 2, [1, 4, 8, 64], samples=8)  # both problems like the first one
    console = Console(width=200, record=True)
    console.print(results_table("m", summary | {"threshold": 1.0}, "b", baseline))
    rows = [[cell.strip() for cell in line.split("│")[1:-1]] for line in console.export_text().splitlines()
            if line.startswith("│")]
    # pass@4 = (1 - C(6,4)/C(8,4)) / 2 = 0.393 against 0.786; each delta is this model's value minus the baseline's
    assert rows == [["greedy_accuracy", "0.500", "1.000", "-0.500"], ["pass@1", "0.125", "0.250", "-0.125"],
                    ["pass@4", "0.393", "0.786", "-0.393"], ["pass@8", "0.500", "1.000", "-0.500"],
                    ["mean_pass_rate", "0.125", "0.250", "-0.125"], ["learnable_share", "0.500", "1.000", "-0.500"],
                    ["sampled_mean_reward", "0.125", "0.250", "-0.125"], ["reward/f", "0.125", "0.250", "-0.125"]]


def test_meta_mismatch_is_refused(tmp_path):
    check_meta(tmp_path, {"model": "a", "samples": 4})
    check_meta(tmp_path, {"model": "a", "samples": 4})
    with pytest.raises(GroupwiseError, match="samples"):
        check_meta(tmp_path, {"model": "a", "samples": 8})


def test_results_are_appended_and_a_rerun_skips_scored_problems(tiny, tiny_config, tmp_path, monkeypatch):
    from groupwise.data.source import load_rows

    model, tokenizer = tiny
    cfg = tiny_config(VOWEL_REWARD, "eval.batch_size=8")  # 8 // 4 samples = 2 problems per chunk
    rows = unique_rows(load_rows(cfg.data, "heldout"))[:5]
    texts = render_prompts(rows, tokenizer, cfg.data)
    rewards = configured_rewards(cfg)
    first = evaluate_passk(model, tokenizer, rows[:3], texts[:3], rewards, cfg, samples=4, ks=[1, 2, 8],
                           out_dir=tmp_path)
    assert first["problems"] == 3 and "pass@2" in first and "pass@8" not in first
    records = read_results(tmp_path / "results.jsonl")
    assert len(records) == 3
    one = next(iter(records.values()))
    assert one["n"] == 4 and 0 <= one["correct"] <= 4 and set(one["pass@k"]) == {"1", "2"}

    calls, advanced = [], []
    real = heldout_eval.sample_problems

    def counted(m, t, chunk_rows, *args, **kwargs):
        calls.append(len(chunk_rows))
        return real(m, t, chunk_rows, *args, **kwargs)

    monkeypatch.setattr(heldout_eval, "sample_problems", counted)
    second = evaluate_passk(model, tokenizer, rows, texts, rewards, cfg, samples=4, ks=[1, 2],
                            out_dir=tmp_path, progress=advanced.append)
    assert calls == [2] and sum(advanced) == 5  # only the two new problems were sampled
    assert second["problems"] == 5 and len(read_results(tmp_path / "results.jsonl")) == 5


def test_eval_cli_with_baseline_writes_results_and_side_by_side_table(tmp_path):
    out = tmp_path / "out"
    args = ["eval", "tiny-random", "--samples", "2", "--k", "1,2,8", "--problems", "3", "--out", str(out),
            "--baseline", "tiny-random", "--set", "log.progress=false", "--set", "rollout.max_new_tokens=4",
            "--set", VOWEL_REWARD]
    done = CliRunner().invoke(app, args, terminal_width=200)
    assert done.exit_code == 0, done.output
    assert "pass@2" in done.output and "baseline: tiny-random" in done.output and "delta" in done.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["problems"] == 3 and "pass@1" in summary
    assert set(summary["sampled_reward_per_function"]) == {"format_regex"}
    assert len((out / "results.jsonl").read_text().splitlines()) == 3
    assert len((out / "baseline" / "results.jsonl").read_text().splitlines()) == 3
    again = CliRunner().invoke(app, args, terminal_width=200)  # resumes: nothing left to score
    assert again.exit_code == 0 and len((out / "results.jsonl").read_text().splitlines()) == 3


def test_eval_cli_on_a_data_file(tmp_path):
    data = tmp_path / "problems.jsonl"
    data.write_text("".join(json.dumps({"prompt": f"What is {i} + 1?", "answer": str(i + 1)}) + "\n"
                            for i in range(4)))
    done = CliRunner().invoke(app, ["eval", "tiny-random", "--data", str(data), "--samples", "0",
                                    "--set", "log.progress=false", "--set", "rollout.max_new_tokens=4"],
                              terminal_width=200)
    assert done.exit_code == 0, done.output
    assert "4 problems" in done.output and "greedy_accuracy" in done.output
    missing = CliRunner().invoke(app, ["eval", "tiny-random", "--data", str(tmp_path / "nope.jsonl")])
    assert missing.exit_code == 2 and "does not exist" in missing.output
