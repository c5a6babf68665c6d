"""`groupwise report`: PNG panels and a self-contained report.html that renders in headless Chromium."""

import json
import shutil
import subprocess

import pytest
from typer.testing import CliRunner

from groupwise.cli.main import app
from groupwise.report.run_report import build_report, pick_sample_steps

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def fake_run(run_dir, steps=12):
    run_dir.mkdir()
    (run_dir / "config.yaml").write_text("model:\n  name: tiny-random\nrollout:\n  group_size: 4\n")
    with (run_dir / "metrics.jsonl").open("w") as f:
        for step in range(1, steps + 1):
            record = {"step": step, "reward/mean": step / steps, "reward/answer_match/mean": step / steps,
                      "reward/answer_match/std": 0.1, "learnable_fraction": 0.5, "success_rate": 0.2,
                      "kl": 0.01, "entropy": 2.0 - step / steps, "completion_len/mean": 20.0,
                      "completion_len/max": 32, "truncated_fraction": 0.1, "clip_frac_low": 0.0,
                      "clip_frac_high": 0.01, "loss": None}
            if step % 4 == 0:
                record["eval/greedy_accuracy"] = step / 20
            f.write(json.dumps(record) + "\n")
    with (run_dir / "samples.jsonl").open("w") as f:
        for step in range(1, steps + 1):
            f.write(json.dumps({"step": step, "prompt": f"What is {step} + 1? <b>&", "answer": str(step + 1),
                                "completions": [f"<answer>{step + 1}</answer>", "no idea"],
                                "rewards": [1.0, 0.0], "truncated": [False, True]}) + "\n")
    summary = {"base": {"greedy_accuracy": 0.1}, "trained": {"greedy_accuracy": 0.4}, "gain_points": 30.0}
    (run_dir / "summary.json").write_text(json.dumps(summary))
    return run_dir


def test_report_has_every_panel_config_and_samples(tmp_path):
    page = build_report(fake_run(tmp_path / "run"))
    names = {p.name for p in page.parent.glob("*.png")}
    assert names == {"rewards.png", "learnable.png", "kl.png", "entropy.png", "lengths.png", "truncation.png",
                     "clipping.png", "heldout.png"}
    html = page.read_text()
    assert html.count("src='data:image/png;base64,") == 8
    assert "src='http" not in html and "<link" not in html  # self-contained
    assert "early (step 1)" in html and "middle (step 7)" in html and "late (step 12)" in html
    assert "What is 1 + 1? &lt;b&gt;&amp;" in html and "&lt;answer&gt;2&lt;/answer&gt;" in html  # escaped
    assert "group_size: 4" in html and "40.0%" in html


def test_code_test_gaming_metrics_get_their_panel(tmp_path):
    run = fake_run(tmp_path / "run", steps=3)
    with (run / "metrics.jsonl").open("a") as f:
        f.write(json.dumps({"step": 4, "reward/code_tests/tests_not_run": 0.25,
                            "reward/code_tests/limit_hit": 0.125}) + "\n")
    page = build_report(run)
    assert (page.parent / "code_tests.png").is_file()
    assert "Code samples that ended before their tests ran" in page.read_text()


def test_an_async_run_gets_its_timing_and_staleness_panels(tmp_path):
    run = fake_run(tmp_path / "run", steps=3)
    page = build_report(run)
    assert not (page.parent / "async.png").exists()  # a synchronous run has neither
    with (run / "metrics.jsonl").open("a") as f:
        f.write(json.dumps({"step": 4, "step_s": 16.6, "async/producer_busy_s": 16.0, "async/producer_idle_s": 0.5,
                            "async/trainer_idle_s": 0.0, "rollout/staleness": 1.0, "is_weight_mean": 0.98,
                            "is_frac_capped": 0.01}) + "\n")
    html = build_report(run).read_text()
    assert (page.parent / "async.png").is_file() and (page.parent / "staleness.png").is_file()
    assert "producer busy and waiting, trainer waiting" in html and "Batch age in updates" in html


def test_sample_steps_for_short_runs():
    assert pick_sample_steps([{"step": 1}]) == {"early": 1}
    assert pick_sample_steps([{"step": 1}, {"step": 2}]) == {"early": 1, "middle": 2}


def test_report_cli_and_its_error(tmp_path):
    done = CliRunner().invoke(app, ["report", str(fake_run(tmp_path / "run", steps=3))])
    assert done.exit_code == 0 and (tmp_path / "run" / "report" / "report.html").is_file()
    empty = tmp_path / "empty"
    empty.mkdir()
    bad = CliRunner().invoke(app, ["report", str(empty)])
    assert bad.exit_code == 2 and "no metrics.jsonl" in bad.output


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed: cannot render report.html")
def test_report_renders_in_headless_chromium_with_all_images_loaded(tmp_path):
    page = build_report(fake_run(tmp_path / "run"))
    profile = tmp_path / "profile"
    profile.mkdir()
    flags = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={profile}", "--virtual-time-budget=5000"]
    dom = subprocess.run(flags + ["--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120)
    assert 'data-images-loaded="8"' in dom.stdout, dom.stderr[-2000:]
    shot = tmp_path / "shot.png"
    subprocess.run(flags + [f"--screenshot={shot}", "--window-size=1200,3000", page.as_uri()],
                   capture_output=True, timeout=120)
    assert shot.is_file() and shot.stat().st_size > 10_000


def test_report_plots_the_training_health_metrics(tmp_path):
    run = fake_run(tmp_path / "run", steps=4)
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    with (run / "metrics.jsonl").open("w") as f:
        for r in records:
            f.write(json.dumps(r | {"kl_max": 0.5 * r["step"], "ref_log_ratio_max": 1.0, "sampler_gap_max": 0.3,
                                    "sampler_gap_mean": 0.01, "is_would_cap_frac": 0.001}) + "\n")
    page = build_report(run)
    assert {"kl_max.png", "mismatch.png"} <= {p.name for p in page.parent.glob("*.png")}
    html = page.read_text()
    assert "alt='Largest per-token KL" in html and "alt='Sampler vs trainer" in html
