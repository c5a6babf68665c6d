"""The low-learnability warning: it fires once, after the configured streak, and names a cause and a fix."""

import io

from rich.console import Console

from groupwise.train.loop import learnability_warning, training_loop


def test_warning_fires_once_with_the_cause(tiny_config, tmp_path):
    cfg = tiny_config("train.steps=4", "log.learnable_warn_steps=2", "log.learnable_warn_below=0.5",
                      "rollout.max_new_tokens=16", "log.samples_per_step=0")
    out = io.StringIO()
    training_loop(cfg, tmp_path / "run", console=Console(file=out, width=400))
    text = out.getvalue()
    # tiny-random (seeded) rambles past 16 tokens and almost never answers: the learnable fraction stays low
    assert text.count("learnable fraction below 0.5 for 2 steps") == 1
    line = next(line for line in text.splitlines() if "learnable fraction below" in line)
    assert line.startswith("warning:") and "most completions are truncated" in line
    assert "raise rollout.max_new_tokens" in line


def test_each_cause_names_a_fix(tiny_config):
    cfg = tiny_config("log.learnable_warn_steps=3", "log.learnable_warn_below=0.2")
    cases = {
        "truncated": {"truncated_fraction": 0.9},
        "too easy": {"success_rate": 0.95, "truncated_fraction": 0.0},
        "no completion earns any reward": {"reward/std": 0.0, "reward/mean": 0.0},
        "rollout.group_size": {"reward/std": 0.3, "reward/mean": 0.4, "success_rate": 0.1},
    }
    for cause, metrics in cases.items():
        message = learnability_warning(metrics, cfg)
        assert message.startswith("learnable fraction below 0.2 for 3 steps: ") and cause in message
    assert "groupwise select" in learnability_warning(cases["too easy"], cfg)
