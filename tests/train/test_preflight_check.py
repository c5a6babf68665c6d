"""`groupwise train --preflight`: the expected learning signal from a few base-model groups, no run folder."""

import math

import torch
from typer.testing import CliRunner

from groupwise.cli.main import app
from groupwise.train.preflight import summarize_preflight


def test_summary_of_sampled_groups(tiny_config):
    cfg = tiny_config("log.learnable_warn_below=0.5")
    total = torch.tensor([[1.0, 1.0], [0.0, 1.0], [0.0, 0.0], [0.0, math.nan]])
    result = summarize_preflight(total, total.reshape(-1, 1), ["answer_match"], torch.tensor([3, 8] * 4),
                                 torch.tensor([True, False] * 4), cfg)
    assert result["learnable_fraction"] == 0.25
    assert result["all_correct_groups"] == 1 and result["all_wrong_groups"] == 2
    assert result["truncated_fraction"] == 0.5 and result["completion_len/mean"] == 5.5
    assert result["reward_values"] == {0.0: 4, 1.0: 3}
    assert result["verdict"].startswith("expected learnable fraction 0.25 is low")
    ok = summarize_preflight(total[:2], total[:2].reshape(-1, 1), ["f"], torch.tensor([3] * 4),
                             torch.tensor([True] * 4), cfg)
    assert ok["verdict"].startswith("ok: about 50%")


def test_preflight_flag_prints_and_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = ["train", "--preflight", "--set", "model.name=tiny-random", "--set", "rollout.group_size=4",
            "--set", "rollout.max_new_tokens=6", "--set", "train.micro_batch_size=8"]
    done = CliRunner().invoke(app, args, terminal_width=200)
    assert done.exit_code == 0, done.output
    assert "preflight: 8 prompts x 4 samples" in done.output and "learnable_fraction" in done.output
    assert "truncated_fraction" in done.output and "reward_values" in done.output
    assert not any(tmp_path.iterdir())  # no run folder
