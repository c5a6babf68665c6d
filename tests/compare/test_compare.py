"""`groupwise compare`: the bootstrap by hand, results.json from known cells, bad experiment files, and a tiny-random
grid that runs (also two cells at a time), is skipped on a rerun, resumes an interrupted cell and renders its
report."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import numpy as np
import pytest
from typer.testing import CliRunner

from groupwise.cli.main import app
from groupwise.compare.bootstrap import (
    bootstrap_indices,
    mean_with_interval,
    percentile_interval,
    two_way_bootstrap_means,
)
from groupwise.compare.results import build_results

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


# ---- the bootstrap -------------------------------------------------------------------------------------------


def test_zero_variance_gives_a_zero_width_interval():
    result = mean_with_interval(np.full((3, 5), 0.25), replicates=500)
    assert result == {"mean": 0.25, "ci95": [0.25, 0.25], "per_seed": [0.25, 0.25, 0.25]}


def test_two_values_give_the_whole_range():
    # one seed, problems worth 0 and 1: a resampled mean is 0, 0.5 or 1 with chances 1/4, 1/2, 1/4
    draws = two_way_bootstrap_means(np.array([[0.0, 1.0]]), replicates=4000)
    assert set(np.unique(draws)) == {0.0, 0.5, 1.0}
    assert abs(np.mean(draws == 0.0) - 0.25) < 0.03 and abs(np.mean(draws == 0.5) - 0.5) < 0.03
    assert percentile_interval(draws) == (0.0, 1.0)
    # the same when the spread is between seeds instead: the seeds are resampled too
    assert mean_with_interval(np.array([[0.0, 0.0], [1.0, 1.0]]), replicates=4000)["ci95"] == [0.0, 1.0]


def test_the_interval_leaves_out_half_the_rest_in_each_tail():
    # 1000 evenly spread draws: the 2.5th and 97.5th percentiles, by linear interpolation between ranks
    assert percentile_interval(np.arange(1000.0)) == pytest.approx((24.975, 974.025))
    assert percentile_interval(np.arange(1000.0), level=0.9) == pytest.approx((49.95, 949.05))
    assert percentile_interval(np.array([np.nan, 2.0, np.inf])) == (2.0, 2.0)  # only finite draws count


def test_resampling_equals_the_plain_loop_over_the_drawn_indices():
    values = np.arange(12, dtype=float).reshape(3, 4) ** 2
    rows, cols = bootstrap_indices(3, 4, replicates=50, seed=7)
    plain = [np.mean([[values[r, c] for c in cols[b]] for r in rows[b]]) for b in range(50)]
    np.testing.assert_allclose(two_way_bootstrap_means(values, replicates=50, seed=7), plain)


def test_a_constant_paired_shift_has_a_zero_width_interval():
    rng = np.random.default_rng(0)
    baseline = rng.random((3, 20))
    result = mean_with_interval((baseline + 0.1) - baseline, replicates=500)
    assert result["ci95"] == pytest.approx([0.1, 0.1]) and result["mean"] == pytest.approx(0.1)


def test_nan_entries_are_left_out():
    assert mean_with_interval(np.array([[1.0, np.nan], [0.0, np.nan]]), replicates=200)["per_seed"] == [1.0, 0.0]


# ---- results.json from known cells ---------------------------------------------------------------------------


def cell(greedy, correct, minutes=1.0, tokens=100, seed=0, variant="v"):
    return {"variant": variant, "seed": seed, "problems": ["p1", "p2"], "greedy_correct": greedy, "n": [4, 4],
            "correct": correct, "mean_reward": [c / 4 for c in correct], "train_minutes": minutes,
            "rollout_tokens": tokens}


def test_results_by_hand():
    base = cell([0, 0], [0, 1], seed=None, variant="base")
    cells = {"grpo": [cell([1, 0], [2, 0], 2.0, 100), cell([0, 0], [2, 2], 4.0, 300, seed=1)],
             "focal": [cell([1, 1], [4, 0], 3.0, 100), cell([1, 0], [2, 2], 5.0, 300, seed=1)]}
    r = build_results(base, cells, baseline="grpo", ks=[1, 2, 8], samples=4, replicates=300, seeds=[0, 1])
    grpo, focal, diff = r["variants"]["grpo"], r["variants"]["focal"], r["differences"]["focal"]
    assert set(grpo) == {"greedy_accuracy", "pass@1", "pass@2", "mean_reward", "train_minutes", "rollout_tokens"}
    assert grpo["greedy_accuracy"]["per_seed"] == [0.5, 0.0] and grpo["greedy_accuracy"]["mean"] == 0.25
    # pass@2 with n=4: c=2 -> 1 - C(2,2)/C(4,2) = 5/6; c=0 -> 0; c=4 -> 1
    assert grpo["pass@2"]["per_seed"] == pytest.approx([5 / 12, 5 / 6])
    assert focal["pass@2"]["per_seed"] == pytest.approx([1 / 2, 5 / 6])
    assert grpo["train_minutes"] == {"mean": 3.0, "ci95": [2.0, 4.0], "per_seed": [2.0, 4.0]}
    assert diff["train_minutes"] == {"mean": 1.0, "ci95": [1.0, 1.0]}  # +1 minute on both seeds
    assert diff["rollout_tokens"] == {"mean": 0.0, "ci95": [0.0, 0.0]}
    assert diff["greedy_accuracy"]["mean"] == pytest.approx(0.5)
    assert diff["pass@1"]["mean"] == pytest.approx((0.5 + 0.0) / 2 / 2)  # (2/4 - 0) on p1 of seed 0 only
    assert "grpo" not in r["differences"] and r["base"]["pass@1"]["per_seed"] == [0.125]
    assert "train_minutes" not in r["base"]


def test_report_table_from_known_results(tmp_path):
    from groupwise.compare.grid_report import build_compare_report, table_markdown

    base = cell([0, 0], [0, 1], seed=None, variant="base")
    curve = {"step": [1, 2], "reward/mean": [0.0, 0.5], "success_rate": [0.0, 0.5], "rollout_tokens": [10, 20]}
    cells = {"grpo": [cell([1, 0], [2, 0], 2.0, 100) | {"curve": curve}],
             "focal": [cell([1, 1], [4, 0], 3.0, 30000) | {"curve": curve}]}
    r = build_results(base, cells, baseline="grpo", ks=[1, 4], samples=4, replicates=300, seeds=[0])
    html = build_compare_report(tmp_path, r, cells).read_text()
    assert "<td>focal</td><td>100.0% <span class='ci'>[100.0%, 100.0%]</span></td>" in html  # greedy 2 of 2
    assert "+50.0 pts" in html and "+1.0 <span class='ci'>[+1.0, +1.0]</span>" in html  # minus grpo's 50%, 2 min
    assert "30k" in html and html.count("src='data:image/png;base64,") == 3
    table = table_markdown(r).splitlines()
    assert table[2] == ("| variant | greedy | pass@1 | pass@4 | mean reward | training min | rollout tokens |")
    # focal: greedy on both problems; p1 4 of 4 samples correct, p2 none. grpo: greedy on p1, p1 2 of 4
    assert table[6] == "| `focal` | 100.0 [100.0, 100.0] | 50.0 [0.0, 100.0] | 50.0 [0.0, 100.0] | " \
        "0.500 [0.000, 1.000] | 3.0 [3.0, 3.0] | 30k [30k, 30k] |"
    assert table[5].startswith("| `grpo` | 50.0 [0.0, 100.0] | 25.0 [0.0, 50.0] |")
    assert table[7].startswith("| `focal` - `grpo` | +50.0 [0.0, +100.0] | +25.0 [0.0, +50.0] | 0.0 [0.0, 0.0] |")
    assert table[4].startswith("| base model | 0.0 [0.0, 0.0] | 12.5 [") and table[4].endswith("| - | - |")


# ---- bad experiment files ------------------------------------------------------------------------------------

GOOD = {"base": {"model": {"name": "tiny-random"}}, "seeds": [0, 1], "variants": {"a": {}, "b": {}}}


@pytest.mark.parametrize(("change", "message"), [
    ({"variants": {"a": {"algorthm": {"focal_gamma": 1.0}}}}, "variant 'a': unknown key 'algorthm'"),
    ({"baseline": "c"}, "baseline 'c' is not among the variants"),
    ({"seeds": []}, "seeds must be a non-empty list"),
    ({"eval": {"samples": 4, "k": [1, 8]}}, "pass@8 needs eval.samples >= 8"),
    ({"variants": {"a": {"algorithm": {"focal_gamma": -1}}}}, "variant 'a': config 'algorithm.focal_gamma'"),
    ({"variants": {"a": {"train": {"seed": 3}}}}, "sets train.seed, which compare sets"),
    ({"variants": {"base": {}}}, "variant name 'base'"),
    ({"repeats": 3}, "unknown key 'repeats'"),
])
def test_bad_experiment_files_fail_with_one_line(tmp_path, change, message):
    import yaml

    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(GOOD | change))
    done = CliRunner().invoke(app, ["compare", str(path), "--out", str(tmp_path / "out")])
    assert done.exit_code == 2, done.output
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: experiment") and message in lines[0], done.stderr
    assert not (tmp_path / "out").exists()


# ---- a tiny-random grid --------------------------------------------------------------------------------------

EXPERIMENT = """
base:
  model: {name: tiny-random, dtype: float32}
  data: {task: arithmetic, train_size: 64, heldout_size: 16, task_params: {max_operand: 20}}
  rewards: {functions: [{name: format_regex, params: {pattern: "[0-9]"}}]}
  rollout: {prompts_per_step: 2, group_size: 4, max_new_tokens: 4, dtype: float32}
  train: {steps: 4, save_every: 2, bf16: false, micro_batch_size: 8, threads: 1}
  log: {progress: false}
seeds: [0, 1]
variants:
  grpo: {}
  same: {}
eval: {problems: 6, samples: 4, k: [1, 2, 4], bootstrap: 200}
"""


def load(path):
    return json.loads(path.read_text())


@pytest.fixture(scope="module")
def grid(tmp_path_factory):
    """The grid, run once, one cell after another."""
    root = tmp_path_factory.mktemp("compare")
    (root / "exp.yaml").write_text(EXPERIMENT)
    done = CliRunner().invoke(app, ["compare", str(root / "exp.yaml"), "--out", str(root / "out")])
    assert done.exit_code == 0, done.output
    assert "4 cells run now" in done.stdout
    (root / "stderr.txt").write_text(done.stderr)
    return root


def test_the_grid_writes_run_folders_cells_and_results(grid):
    out = grid / "out"
    started = re.findall(r"training and evaluating: \S+/out/(\w+/seed-\d)", (grid / "stderr.txt").read_text())
    assert started == ["grpo/seed-0", "same/seed-0", "grpo/seed-1", "same/seed-1"]  # seed by seed: paired early
    for name in ("grpo", "same"):
        for seed in (0, 1):
            folder = out / name / f"seed-{seed}"
            assert (folder / "final").is_dir() and (folder / "config.yaml").is_file()
            c = load(folder / "cell.json")
            assert c["precision"] is None  # every dtype pinned: the same on any machine
            assert len(c["problems"]) == 6 and c["n"] == [4] * 6 and c["curve"]["step"] == [1, 2, 3, 4]
            metrics = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
            tokens = [m["sampled_tokens"] for m in metrics]  # every completion token sampled, 2x4 a step
            assert c["rollout_tokens"] == sum(tokens) == metrics[-1]["rollout_tokens"]
            assert sum(tokens) == pytest.approx(sum(8 * m["completion_len/mean"] for m in metrics))
    base = load(out / "base" / "cell.json")
    assert base["problems"] == load(out / "grpo" / "seed-0" / "cell.json")["problems"]  # the same problems
    r = load(out / "results.json")
    cells = [load(out / "grpo" / f"seed-{s}" / "cell.json") for s in (0, 1)]
    assert r["variants"]["grpo"]["pass@4"]["per_seed"] == pytest.approx(
        [sum(c > 0 for c in cell["correct"]) / 6 for cell in cells])  # pass@n: any correct sample
    assert r["variants"]["grpo"]["mean_reward"]["mean"] == pytest.approx(
        np.mean([cell["mean_reward"] for cell in cells]))
    assert r["variants"]["grpo"]["rollout_tokens"]["per_seed"] == [c["rollout_tokens"] for c in cells]
    # `same` is `grpo` under another name: same seeds, same training, same samples, so a zero difference
    for metric in ("greedy_accuracy", "pass@1", "pass@2", "pass@4", "mean_reward", "rollout_tokens"):
        assert r["differences"]["same"][metric] == {"mean": 0.0, "ci95": [0.0, 0.0]}, metric
    assert 0 < r["variants"]["grpo"]["pass@1"]["mean"] < r["variants"]["grpo"]["pass@4"]["mean"]
    assert r["problems"] == 6 and r["baseline"] == "grpo" and set(r["base"]) == {
        "greedy_accuracy", "pass@1", "pass@2", "pass@4", "mean_reward"}


def test_a_rerun_skips_finished_cells_and_resumes_an_interrupted_one(grid, monkeypatch):
    from groupwise.train import loop

    out, trained = grid / "out", []
    real = loop.training_loop
    monkeypatch.setattr(loop, "training_loop", lambda *a, **k: trained.append(k["resume"]) or real(*a, **k))
    cells = sorted(out.glob("*/seed-*/cell.json")) + [out / "base" / "cell.json"]
    stamps = {p: p.stat().st_mtime_ns for p in cells}
    again = CliRunner().invoke(app, ["compare", str(grid / "exp.yaml"), "--out", str(out)])
    assert again.exit_code == 0, again.output
    assert trained == [] and {p: p.stat().st_mtime_ns for p in cells} == stamps and "0 cells run now" in again.stdout

    # interrupt grpo/seed-1 after step 3: its checkpoint of step 2 is the newest, nothing after it was kept
    folder = out / "grpo" / "seed-1"
    before = load(folder / "cell.json")
    for name in ("cell.json", "summary.json"):
        (folder / name).unlink()
    for name in ("final", "eval", "checkpoint-000004"):
        shutil.rmtree(folder / name)
    lines = (folder / "metrics.jsonl").read_text().splitlines()
    (folder / "metrics.jsonl").write_text("\n".join(lines[:3]) + "\n")
    resumed = CliRunner().invoke(app, ["compare", str(grid / "exp.yaml"), "--out", str(out)])
    assert resumed.exit_code == 0, resumed.output
    assert trained == [True] and "1 cells run now" in resumed.stdout and "resuming from checkpoint" in resumed.stderr
    after = load(folder / "cell.json")
    assert [json.loads(line)["step"] for line in (folder / "metrics.jsonl").read_text().splitlines()] == [1, 2, 3, 4]
    for key in ("problems", "greedy_correct", "correct", "mean_reward", "rollout_tokens"):
        assert after[key] == before[key], key  # the resumed run is the run that was interrupted


@pytest.mark.slow  # two fresh processes import torch and transformers
def test_parallel_cells_equal_the_same_cells_run_one_after_another(grid, tmp_path):
    (tmp_path / "exp.yaml").write_text(EXPERIMENT.replace("  same: {}\n", ""))
    done = CliRunner().invoke(app, ["compare", str(tmp_path / "exp.yaml"), "--out", str(tmp_path / "out"),
                                    "--parallel", "2"])
    assert done.exit_code == 0, done.output
    assert "2 at a time with 1 threads each" in done.stderr
    for seed in (0, 1):  # each cell in its own process, one thread each, as in the sequential grid
        parallel = load(tmp_path / "out" / "grpo" / f"seed-{seed}" / "cell.json")
        sequential = load(grid / "out" / "grpo" / f"seed-{seed}" / "cell.json")
        for key in ("problems", "greedy_correct", "correct", "mean_reward", "rollout_tokens"):
            assert parallel[key] == sequential[key], (seed, key)


def test_the_cell_files_alone_rebuild_the_results_elsewhere(grid, tmp_path, monkeypatch):
    from groupwise.train import loop

    monkeypatch.setattr(loop, "training_loop", lambda *a, **k: pytest.fail("a finished cell was trained again"))
    elsewhere = tmp_path / "checkout"  # what a commit of the cell.json files carries to another machine
    for path in (grid / "out").glob("**/cell.json"):
        target = elsewhere / path.relative_to(grid / "out")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
    done = CliRunner().invoke(app, ["compare", str(grid / "exp.yaml"), "--out", str(elsewhere)])
    assert done.exit_code == 0, done.output
    assert load(elsewhere / "results.json") == load(grid / "out" / "results.json")
    assert (elsewhere / "report.html").is_file() and not (elsewhere / "grpo" / "seed-0" / "final").exists()


def test_another_experiment_in_the_same_folder_is_refused(grid, tmp_path):
    changed = tmp_path / "exp.yaml"
    changed.write_text(EXPERIMENT.replace("steps: 4", "steps: 5"))
    done = CliRunner().invoke(app, ["compare", str(changed), "--out", str(grid / "out")])
    assert done.exit_code == 2 and "was made from another experiment" in done.stderr


def test_a_grid_with_auto_precision_is_not_continued_where_auto_resolves_otherwise(tmp_path, monkeypatch):
    """`auto` dtypes resolve per machine: cells in bf16 and float32 must not end up in one grid unnoticed."""
    from groupwise.models import precision

    auto = EXPERIMENT.replace("max_new_tokens: 4, dtype: float32", "max_new_tokens: 4, dtype: auto").replace(
        "seeds: [0, 1]", "seeds: [0]").replace("steps: 4, save_every: 2", "steps: 1, save_every: 1")
    (tmp_path / "exp.yaml").write_text(auto.replace("  same: {}\n", ""))
    command = ["compare", str(tmp_path / "exp.yaml"), "--out", str(tmp_path / "out")]
    assert (done := CliRunner().invoke(app, command)).exit_code == 0, done.output
    here = "bfloat16" if precision.fast_bf16(precision.torch.device("cpu")) else "float32"
    assert load(tmp_path / "out" / "grpo" / "seed-0" / "cell.json")["precision"] == here
    real = precision.fast_bf16
    monkeypatch.setattr(precision, "fast_bf16", lambda device: not real(device))  # another kind of machine
    done = CliRunner().invoke(app, command)
    assert done.exit_code == 2 and f"was made in {here}, but `auto` precision is" in done.stderr, done.output


def test_the_report_has_its_table_and_plots(grid):
    page = grid / "out" / "report.html"
    html = page.read_text()
    assert html.count("src='data:image/png;base64,") == 3 and "<link" not in html
    assert {"accuracy.png", "passk.png", "curves.png"} <= {p.name for p in (grid / "out").glob("*.png")}
    assert "<td>base</td>" in html and "<td>same</td>" in html and "variant minus grpo" in html
    table = (grid / "out" / "results.md").read_text()
    assert "| `same` - `grpo` | 0.0 [0.0, 0.0] |" in table
    assert table.count("\n| ") == 5  # the heading, base, 2 variants, 1 difference


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed: cannot render report.html")
def test_the_report_renders_in_headless_chromium(grid, tmp_path):
    profile = tmp_path / "profile"
    profile.mkdir()
    flags = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={profile}", "--virtual-time-budget=5000"]
    page = (grid / "out" / "report.html").as_uri()
    dom = subprocess.run(flags + ["--dump-dom", page], capture_output=True, text=True, timeout=120)
    assert 'data-images-loaded="3"' in dom.stdout, dom.stderr[-2000:]


def test_select_variants_train_on_their_slice_of_the_pool(tmp_path, one_thread):
    experiment = EXPERIMENT.replace("steps: 4, save_every: 2", "steps: 1").replace(
        "seeds: [0, 1]", "seeds: [3]").replace("train_size: 64", "train_size: 16").replace(
        "  grpo: {}\n  same: {}", "  hardest: {select: {keep: 'hardest:0.25', samples: 2}}\n"
        "  easiest: {select: {keep: 'easiest:0.25', samples: 2}}").replace(
        "problems: 6, samples: 4, k: [1, 2, 4]", "problems: 4, samples: 2, k: [1, 2]")
    (tmp_path / "exp.yaml").write_text(experiment)
    done = CliRunner().invoke(app, ["compare", str(tmp_path / "exp.yaml"), "--out", str(tmp_path / "out")])
    assert done.exit_code == 0, done.output
    assert "base model on 4 held-out problems: greedy accuracy" in done.stderr
    select = tmp_path / "out" / "select"
    assert [p.name for p in select.glob("*.difficulty.jsonl")] == ["pool-2.difficulty.jsonl"]  # estimated once
    assert len((select / "pool-2.difficulty.jsonl").read_text().splitlines()) == 16
    slices = {name: [json.loads(line) for line in (select / f"{name}.jsonl").read_text().splitlines()]
              for name in ("hardest", "easiest")}
    assert [len(rows) for rows in slices.values()] == [4, 4]
    assert max(r["pass_rate"] for r in slices["hardest"]) <= min(r["pass_rate"] for r in slices["easiest"])
    import yaml

    config = yaml.safe_load((tmp_path / "out" / "hardest" / "seed-3" / "config.yaml").read_text())
    assert config["data"]["path"] == str((select / "hardest.jsonl").resolve()) and config["data"]["task"] is None
    assert config["rewards"]["functions"][0]["name"] == "format_regex"  # scored as the base config scores
    assert config["train"]["seed"] == config["data"]["order_seed"] == 3
    r = load(tmp_path / "out" / "results.json")
    assert set(r["variants"]) == {"hardest", "easiest"} and r["baseline"] == "hardest"


def test_the_example_experiments_meet_the_issue_budget():
    from pathlib import Path

    from groupwise.compare.spec import cell_config, load_experiment

    root = Path(__file__).parents[2] / "examples" / "experiments"
    for name in ("f_grpo_group_size.yaml", "hard_examples.yaml"):
        experiment = load_experiment(root / name)
        assert len(experiment.seeds) >= 3 and experiment.eval.problems >= 200 and experiment.eval.samples >= 16
        configs = [cell_config(experiment, v, 0, threads=1) for v in experiment.variants]
        assert len({(c.rollout.prompts_per_step, c.train.steps) for c in configs}) == 1  # same prompts and steps
        assert all(c.data.heldout_size >= 200 for c in configs)
    focal = load_experiment(root / "f_grpo_group_size.yaml")
    assert [(c.rollout.group_size, c.algorithm.focal_gamma) for c in
            (cell_config(focal, v, 0, threads=1) for v in focal.variants)] == [(8, 0.0), (8, 0.5), (8, 1.0), (32, 0.0)]


def test_an_async_cell_splits_its_share_of_the_cores_between_producer_and_trainer():
    from pathlib import Path

    from groupwise.compare.spec import cell_config, load_experiment

    experiment = load_experiment(Path(__file__).parents[2] / "examples" / "experiments" / "async.yaml")
    sync, stale = (cell_config(experiment, v, 1, threads=2) for v in experiment.variants)
    assert (sync.rollout.max_staleness, sync.rollout.threads, sync.train.threads) == (0, None, 2)
    assert (stale.rollout.max_staleness, stale.rollout.threads, stale.train.threads) == (1, 1, 1)  # not 1 + 2
    assert stale.train.seed == stale.data.order_seed == 1
    assert cell_config(experiment, experiment.variants[1], 0, threads=5).rollout.threads == 2


def test_rollout_tokens_count_the_groups_dynamic_sampling_drops(tmp_path, tiny_config, one_thread):
    from groupwise.api import run_training

    # tiny-random rarely answers an addition: most groups are all-zero, so DAPO resamples and drops them
    cfg = tiny_config("algorithm.dynamic_sampling=true", "algorithm.max_sampling_rounds=3", "train.steps=1")
    summary = run_training(cfg, tmp_path / "run", resume=False)
    m = json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[0])
    assert m["sampling_rounds"] == 3 and m["groups_kept"] < 4
    trained_on = 4 * (m["groups_kept"] or 4) * m["completion_len/mean"]  # tokens of the batch the step trained on
    assert summary["rollout_tokens"] == m["rollout_tokens"] == m["sampled_tokens"] > trained_on
    assert m["sampled_tokens"] <= 3 * 16 * 8  # at most 3 rounds of 4 x 4 completions of 8 tokens
