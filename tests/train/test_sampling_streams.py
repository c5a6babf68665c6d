"""A step's completions depend on (seed, step, round, prompt index, sample index) only."""

import json

import pytest
import torch

from groupwise.data.stream import PromptStream
from groupwise.models.tiny import build_tiny_random
from groupwise.train.loop import training_loop
from groupwise.train.policy import wrap_policy
from groupwise.train.step import collect_batch

pytestmark = pytest.mark.usefixtures("one_thread")


def _completions(cfg, step: int, global_seed: int) -> list[str]:
    model, tokenizer = build_tiny_random(seed=0)
    policy = wrap_policy(model, cfg)
    rows = [{"prompt": f"{i}+{i}=", "answer": str(2 * i)} for i in range(8)]
    stream = PromptStream(rows, [r["prompt"] for r in rows], seed=0)
    torch.manual_seed(global_seed)
    return collect_batch(policy, tokenizer, cfg, [], stream, {}, step).rollout.completions


def test_completions_ignore_the_global_generator_but_not_the_step(tiny_config, monkeypatch):
    import groupwise.train.step as step_module

    monkeypatch.setattr(step_module, "score_rollout", _fake_scores)
    cfg = tiny_config()
    first = _completions(cfg, step=1, global_seed=0)
    assert _completions(cfg, step=1, global_seed=123) == first
    assert _completions(cfg, step=2, global_seed=0) != first


def _fake_scores(rollout, rows, texts, rewards, cfg, **_):
    from groupwise.rewards.compute import Scores

    total = torch.tensor([float(len(c) % 2) for c in rollout.completions])
    return Scores(total[:, None], total, ["parity"], {})


def test_micro_batch_size_no_longer_changes_the_samples(tiny_config, tmp_path):
    # LoRA dropout draws from the global generator once per micro-batch element: a different micro-batch size
    # used to shift every later sample; a learning rate this small keeps the weights (near) equal
    def samples(micro: int) -> list[list[str]]:
        cfg = tiny_config("train.steps=3", f"train.micro_batch_size={micro}", "lora.dropout=0.2",
                          "train.learning_rate=1e-9", "log.samples_per_step=4")
        training_loop(cfg, tmp_path / f"m{micro}")
        lines = (tmp_path / f"m{micro}" / "samples.jsonl").read_text().splitlines()
        return [json.loads(line)["completions"] for line in lines]

    small, large = samples(4), samples(16)
    assert len(small) == 12 and small == large
