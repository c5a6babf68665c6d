"""`groupwise eval RUN` from another directory: the run's held-out set, completions stored per problem,
a caveat for few problems, and `--data TRAIN_FILE` labelled as not held-out (issue 12)."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from groupwise.cli.main import app
from groupwise.models.tiny import build_tiny_random

FAST = ["--set", "log.progress=false", "--set", "rollout.max_new_tokens=4", "--set", "train.threads=1"]


def test_eval_of_a_run_from_another_directory(tmp_path, monkeypatch, one_thread):
    work, elsewhere = tmp_path / "work", tmp_path / "elsewhere"
    work.mkdir()
    elsewhere.mkdir()
    model, tokenizer = build_tiny_random(seed=0)
    model.save_pretrained(work / "tiny")
    tokenizer.save_pretrained(work / "tiny")
    (work / "rows.jsonl").write_text("".join(json.dumps({"prompt": f"What is {i} + 1?", "answer": str(i + 1)})
                                             + "\n" for i in range(40)))
    (work / "job.yaml").write_text(  # relative paths, as a user writes them; micro_batch_size left at 16
        "model: {name: tiny, dtype: float32}\ndata: {path: rows.jsonl, heldout_fraction: 0.1}\n"
        "rollout: {prompts_per_step: 2, group_size: 4, dtype: float32}\ntrain: {steps: 1, bf16: false}\n"
        "eval: {before_after: true, samples: 0}\nlog: {samples_per_step: 1}\n")
    monkeypatch.chdir(work)
    trained = CliRunner().invoke(app, ["train", "job.yaml", "--run-dir", str(tmp_path / "run"), *FAST],
                                 terminal_width=200)
    assert trained.exit_code == 0, trained.output
    assert "micro_batch_size" not in trained.stderr  # lowered to 8 quietly: the user never set it (issue 28)
    assert "only 4 held-out problems" in trained.stderr  # 10% of 40 rows back the reported gain
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["base"]["problems"] == 4

    monkeypatch.chdir(elsewhere)  # relative paths in the job were stored absolute
    done = CliRunner().invoke(app, ["eval", str(tmp_path / "run"), "--samples", "2", "--k", "1",
                                    "--out", "out", *FAST], terminal_width=200)
    assert done.exit_code == 0, done.output
    result = json.loads((elsewhere / "out" / "summary.json").read_text())
    assert result["problems"] == summary["base"]["problems"] == 4  # the run's own held-out set, no fewer
    assert "held-out evaluation (4 problems" in done.stdout and "only 4 held-out problems" in done.stderr
    records = [json.loads(line) for line in (elsewhere / "out" / "results.jsonl").read_text().splitlines()]
    for record in records:
        assert isinstance(record["greedy_completion"], str) and len(record["completions"]) == 2
        assert len(record["sample_rewards"]) == 2 and record["greedy_reward"] in (0.0, 1.0)
        assert record["greedy_correct"] == (record["greedy_reward"] >= 1.0)

    on_train = CliRunner().invoke(app, ["eval", str(tmp_path / "run"), "--data", str(work / "rows.jsonl"),
                                        "--samples", "0", *FAST], terminal_width=200)
    assert on_train.exit_code == 0, on_train.output
    assert "NOT held-out: 36 of 40 problems are in the training data" in on_train.stdout
    assert "only" not in on_train.stderr  # 40 problems back it


def test_few_problems_warning_names_the_step_size():
    from groupwise.evaluate.heldout_eval import few_problems_warning

    assert few_problems_warning(20) is None and few_problems_warning(200) is None
    assert few_problems_warning(2).startswith("warning: only 2 held-out problems: one problem moves accuracy by "
                                              "50 points")
    assert "only 1 held-out problem:" in few_problems_warning(1)


def test_rewards_that_were_the_runs_defaults_follow_the_evaluated_data(tmp_path):
    from groupwise.config.load import build_config
    from groupwise.evaluate.data_option import data_overrides
    from groupwise.rewards.compute import with_named_rewards

    run_cfg = with_named_rewards(build_config(None, ["data.task=countdown"]))  # as a run's config.yaml says
    assert [f.name for f in run_cfg.rewards.functions] == ["countdown_verify"]
    switched = build_config(None, ["data.task=countdown", "rewards.functions=[{name: countdown_verify}]",
                                   *data_overrides("arithmetic", run_cfg, "heldout")])
    assert switched.rewards.functions is None  # arithmetic's own answer_match will score it
    chosen = with_named_rewards(build_config(None, ["rewards.functions=[{name: math_equivalence}]"]))
    assert "rewards.functions=null" not in data_overrides("countdown", chosen, "heldout")  # chosen: kept


def test_training_evaluates_each_held_out_problem_once(tiny_config, tmp_path, one_thread):
    """A small held-out set cycled up to data.heldout_size (the code tasks hold out 7 problems) counts once."""
    from groupwise.train.loop import training_loop

    rows, held = tmp_path / "rows.jsonl", tmp_path / "held.jsonl"
    rows.write_text("".join(json.dumps({"prompt": f"Say {i}.", "answer": str(i)}) + "\n" for i in range(8)))
    held.write_text("".join(json.dumps({"prompt": f"Say {i % 3}!", "answer": str(i % 3)}) + "\n"
                            for i in range(12)))
    cfg = tiny_config(f"data.path={rows}", f"data.heldout_path={held}", "eval.before_after=true",
                      "eval.samples=0", "train.steps=1", "log.samples_per_step=0")
    summary = training_loop(cfg, tmp_path / "run")
    assert summary["base"]["problems"] == summary["trained"]["problems"] == 3
