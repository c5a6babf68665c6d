"""`reward_model`: scores from a tiny randomly initialised sequence classifier built here."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import LlamaConfig, LlamaForSequenceClassification

import groupwise
from groupwise.errors import GroupwiseError
from groupwise.models.tiny import build_tiny_tokenizer
from groupwise.rewards import resolve_reward


@pytest.fixture(scope="module")
def classifier_dir(tmp_path_factory):
    torch.manual_seed(0)
    tokenizer = build_tiny_tokenizer()
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=4, num_key_value_heads=2, num_labels=2,
                         pad_token_id=tokenizer.pad_token_id)
    model = LlamaForSequenceClassification(config).eval()
    folder = tmp_path_factory.mktemp("rm")
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder, model, tokenizer


def _direct(model, tokenizer, text: str, label: int) -> float:
    """The classifier on one unpadded text: what each batched score must equal."""
    with torch.no_grad():
        return float(model(**tokenizer([text], return_tensors="pt")).logits[0, label])


def test_scores_equal_the_classifier_on_each_text(classifier_dir):
    folder, model, tokenizer = classifier_dir
    prompts = ["u:1+1=\na:", "u:what?\na:", "u:x\na:"]
    completions = ["2", "a much longer answer here", ""]
    for label in (0, 1):
        fn = resolve_reward("reward_model", {"model": str(folder), "batch_size": 2, "label": label})
        scores = fn(prompts, completions)  # batches of 2 and 1, right-padded
        expected = [_direct(model, tokenizer, p + c, label) for p, c in zip(prompts, completions, strict=True)]
        assert scores == pytest.approx(expected, abs=1e-5)
    assert scores[0] != scores[1]  # a random classifier still tells texts apart
    # a conversational completion is scored on its content
    messages = fn(prompts[:1], [[{"role": "assistant", "content": "2"}]])
    assert messages == pytest.approx(scores[:1], abs=1e-5)


def test_bad_reward_model_params(classifier_dir, tmp_path):
    folder, _, _ = classifier_dir
    with pytest.raises(GroupwiseError, match="does not exist"):
        resolve_reward("reward_model", {"model": str(tmp_path / "missing")})
    (tmp_path / "empty").mkdir()
    with pytest.raises(GroupwiseError, match="cannot load reward model"):
        resolve_reward("reward_model", {"model": str(tmp_path / "empty")})
    with pytest.raises(GroupwiseError, match="2 labels, label=2"):
        resolve_reward("reward_model", {"model": str(folder), "label": 2})
    with pytest.raises(GroupwiseError, match="batch_size"):
        resolve_reward("reward_model", {"model": str(folder), "batch_size": 0})


def test_training_with_a_reward_model(classifier_dir, tmp_path, tiny_config, one_thread):
    folder, _, _ = classifier_dir
    from groupwise.train.loop import training_loop

    spec = json.dumps([{"name": "reward_model", "params": {"model": str(folder), "batch_size": 8}}])
    cfg = tiny_config(f"rewards.functions={spec}", "train.steps=1")
    training_loop(cfg, tmp_path / "run")
    row = json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[0])
    assert row["reward/reward_model/std"] > 0  # real, varying scores reached the advantages
    run = groupwise.train(cfg, dataset=[{"prompt": "hi"}, {"prompt": "yo"}], run_dir=tmp_path / "api",
                          rewards=[{"name": "reward_model", "params": {"model": str(folder)}}])
    assert "reward/reward_model/mean" in json.loads((run.run_dir / "metrics.jsonl").read_text().splitlines()[0])
