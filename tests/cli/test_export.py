"""`groupwise export`: the exported folder loads with plain transformers and decodes like the trained run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from groupwise.config.load import build_config
from groupwise.errors import GroupwiseError
from groupwise.models.export import BASE_FOLDER, export_run
from groupwise.models.tiny import build_tiny_random
from groupwise.models.trained import load_trained
from groupwise.rollout.engines.hf import HFEngine
from groupwise.rollout.sampler import sample_rollouts
from groupwise.train.loop import training_loop

CLI = [sys.executable, "-m", "groupwise.cli.main"]
RUN = ["model.name=tiny-random", "rollout.prompts_per_step=2", "rollout.group_size=4",
       "rollout.max_new_tokens=6", "train.micro_batch_size=8", "train.steps=2", "train.learning_rate=0.05",
       "eval.before_after=false", "log.progress=false", "data.train_size=16", "data.heldout_size=4",
       "rewards.functions=[{name: format_regex, params: {pattern: '[0-9]'}}]"]  # varies, so training moves
PROMPTS = ["u:12+7=\na:", "u:what is 3*4?\na:", "u:hello\na:"]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("export") / "lora"
    training_loop(build_config(None, RUN), run)
    return run


def greedy(model, tokenizer) -> tuple[list[list[int]], torch.Tensor]:
    """Greedy completion ids of PROMPTS, and the next-token logits of the first prompt."""
    rollout = sample_rollouts(HFEngine(model.eval()), tokenizer, PROMPTS, group_size=1, max_new_tokens=10,
                                      greedy=True)
    with torch.no_grad():
        logits = model(**tokenizer(PROMPTS[:1], return_tensors="pt", add_special_tokens=False)).logits[0, -1]
    return rollout.completion_ids.tolist(), logits


def assert_same_decoding(run: Path, out: Path) -> None:
    """The export decodes like the run's weights at full precision (the run may keep its base in bf16)."""
    trained, tokenizer, _ = load_trained(run, ["model.dtype=float32"])
    exported = AutoModelForCausalLM.from_pretrained(str(out))
    exported_tokenizer = AutoTokenizer.from_pretrained(str(out))
    assert exported_tokenizer.chat_template == tokenizer.chat_template
    ids_a, logits_a = greedy(trained, tokenizer)
    ids_b, logits_b = greedy(exported, exported_tokenizer)
    assert ids_a == ids_b
    assert torch.allclose(logits_a, logits_b, atol=1e-4)


@pytest.fixture
def umask_022():
    """The usual umask while a test writes files (the export gives every file its default mode: 0644 here)."""
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def file_modes(folder: Path) -> dict[str, int]:
    """Permission bits of every file under `folder`."""
    return {str(p.relative_to(folder)): p.stat().st_mode & 0o777 for p in folder.rglob("*") if p.is_file()}


def test_cli_export_merge_writes_a_plain_model_that_decodes_like_the_run(lora_run, tmp_path, umask_022):
    out = tmp_path / "merged"
    done = subprocess.run(CLI + ["export", str(lora_run), "--out", str(out), "--merge"], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert (out / "config.json").is_file() and not (out / "adapter_config.json").exists()
    assert file_modes(out) == {p.name: 0o644 for p in out.iterdir()}  # model.safetensors too (issue 28)
    assert_same_decoding(lora_run, out)
    base, tokenizer = build_tiny_random(seed=0)
    merged = AutoModelForCausalLM.from_pretrained(str(out))
    assert not torch.allclose(greedy(base, tokenizer)[1], greedy(merged, tokenizer)[1], atol=1e-4), \
        "training changed nothing: the comparison would prove nothing"


def test_export_without_merge_writes_the_adapter_and_a_loadable_base(lora_run, tmp_path, umask_022):
    out = export_run(lora_run, tmp_path / "adapter")
    assert (out / "adapter_config.json").is_file() and (out / BASE_FOLDER / "config.json").is_file()
    assert set(file_modes(out).values()) == {0o644}  # the adapter's and its base model's files
    assert_same_decoding(lora_run, out)


def test_export_of_a_full_fine_tuning_run(tmp_path):
    run = tmp_path / "full"
    full = ["lora.enabled=false", "algorithm.beta=0", "train.learning_rate=1e-3"]
    training_loop(build_config(None, RUN + full), run)
    out = export_run(run, tmp_path / "model", merge=True)
    assert_same_decoding(run, out)


def test_export_refuses_an_existing_folder_and_a_missing_run(lora_run, tmp_path):
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "x").write_text("keep")
    with pytest.raises(GroupwiseError, match="already exists"):
        export_run(lora_run, tmp_path / "taken")
    with pytest.raises(GroupwiseError, match="not a run folder"):
        export_run(tmp_path / "nope", tmp_path / "out")
    assert (tmp_path / "taken" / "x").read_text() == "keep" and not (tmp_path / "out").exists()
