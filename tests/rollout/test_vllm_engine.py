"""The vllm engines on vLLM's CPU build: the same tokens and log-probs as the fast engine and the trainer, seeds
per completion, weights that follow every update (full fine-tuning, LoRA merged, LoRA adapter), and one-line
failures. The models have a head size of 32 (vLLM's CPU attention does not run 16 on AVX2 CPUs)."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time

import pytest
import torch
from typer.testing import CliRunner

from groupwise.cli.main import app
from groupwise.config.load import build_config
from groupwise.data.prompts import render_prompts
from groupwise.data.source import load_rows
from groupwise.errors import GroupwiseError
from groupwise.evaluate.heldout_eval import unique_rows
from groupwise.models.load import load_configured_model
from groupwise.models.logprobs import naive_sequence_logprobs
from groupwise.models.tiny import build_tiny_random
from groupwise.rewards.compute import RewardFunction
from groupwise.rollout.engines.fast import FastEngine
from groupwise.rollout.engines.vllm import VLLMEngine, within_timeout
from groupwise.rollout.protocol import EngineFailure
from groupwise.rollout.sampler import sample_rollouts
from groupwise.rollout.token_draws import top_p_filter
from groupwise.runtime.jsonl import read_jsonl
from groupwise.train.checkpoint import list_checkpoints
from groupwise.train.loop import training_loop
from groupwise.train.metrics import read_metrics
from groupwise.train.optim import build_optimizer
from groupwise.train.policy import wrap_policy
from groupwise.train.step import grpo_step

PROMPTS = ["1+2=", "what is 7?", "a"]
VLLM = ["model.name=tiny-random", "rollout.engine=vllm"]
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def tiny32():
    """A tiny Llama with 4 heads of size 32."""
    return build_tiny_random(seed=0, hidden=128)


def token_logprobs(model, rollout, temperature: float = 1.0, top_p: float = 1.0) -> torch.Tensor:
    """[N, C] the trainer's log-prob of each completion token under the distribution drawn from (0 past the end)."""
    ids = torch.cat([rollout.prompt_ids, rollout.completion_ids], 1)
    mask = torch.cat([rollout.prompt_mask, rollout.completion_mask], 1)
    start = rollout.prompt_ids.shape[1]
    with torch.no_grad():
        if top_p >= 1.0:
            return naive_sequence_logprobs(model, ids, mask, start, temperature) * rollout.completion_mask
        logits = model(input_ids=ids, attention_mask=mask).logits[:, start - 1:-1].float() / temperature
    logp = torch.log_softmax(top_p_filter(logits, top_p), -1).gather(-1, rollout.completion_ids[..., None])
    return logp.squeeze(-1) * rollout.completion_mask


def test_vllm_decodes_greedily_like_the_fast_engine_with_the_trainers_logprobs(tiny32):
    model, tokenizer = tiny32
    engine = VLLMEngine(model, build_config(None, VLLM).rollout)
    vllm = sample_rollouts(engine, tokenizer, PROMPTS, group_size=2, max_new_tokens=12, greedy=True)
    fast = sample_rollouts(FastEngine(model, torch.float32), tokenizer, PROMPTS, group_size=2, max_new_tokens=12,
                           greedy=True)
    assert vllm.completions == fast.completions and torch.equal(vllm.completion_mask, fast.completion_mask)
    torch.testing.assert_close(vllm.sampling_logp, fast.sampling_logp, atol=1e-4, rtol=0)
    sampled = sample_rollouts(engine, tokenizer, PROMPTS, group_size=3, max_new_tokens=10, temperature=0.7,
                              top_p=0.9, keys=[1, 2, 3])
    expected = token_logprobs(model, sampled, temperature=0.7, top_p=0.9)
    assert (sampled.sampling_logp - expected).abs().max() < 1e-4  # the log-probs of what was drawn from
    assert len(set(sampled.completions)) > 3


def test_each_completion_has_its_own_seed_whatever_its_batch(tiny32):
    model, tokenizer = tiny32
    engine = VLLMEngine(model, build_config(None, VLLM).rollout)

    def sample(texts: list[str], keys: list[int]) -> list[str]:
        return sample_rollouts(engine, tokenizer, texts, group_size=3, max_new_tokens=10, keys=keys).completions

    whole = sample(PROMPTS, [11, 22, 33])
    assert sample(PROMPTS, [11, 22, 33]) == whole  # the same seed twice: the same completions
    assert sample(PROMPTS[2:], [33]) == whole[6:]
    assert sample([PROMPTS[2], PROMPTS[0]], [33, 11]) == whole[6:] + whole[:3]
    assert sample(PROMPTS, [11, 22, 34])[6:] != whole[6:]


def _trained_policy(model, tokenizer, cfg):
    """The policy after one optimizer step at a large learning rate; its engine synced, and the greedy rollout
    taken before the update."""
    policy = wrap_policy(model, cfg)
    before = policy.sample(tokenizer, PROMPTS[:2], cfg.rollout)
    optimizer, scheduler = build_optimizer(policy.trainable_parameters(), cfg.train)
    rows = [{"prompt": text} for text in PROMPTS[:2]]
    variety = RewardFunction("variety", lambda prompts, completions, **_: [float(len(set(c))) for c in completions],
                             1.0)
    metrics = grpo_step(policy, tokenizer, optimizer, scheduler, cfg, [variety], lambda n: (rows[:n], PROMPTS[:n]),
                        step=1)
    assert policy.version == 1 and metrics["learnable_fraction"] > 0  # some advantages are not 0
    policy.refresh_sampler()
    return policy, before


@pytest.mark.parametrize("mode", ["full", "lora-merged", "lora-adapter"])
def test_after_an_update_vllm_samples_from_the_new_weights(tiny32, tiny_config, mode):
    model, tokenizer = tiny32
    cfg = tiny_config(*VLLM, "rollout.prompts_per_step=2", "rollout.group_size=4", "train.learning_rate=0.5",
                      "algorithm.beta=0", f"lora.enabled={mode != 'full'}", "lora.r=8",
                      f"rollout.vllm.lora_sync={'adapter' if mode == 'lora-adapter' else 'merged'}")
    policy, before = _trained_policy(model, tokenizer, cfg)
    after = policy.sampler(tokenizer, PROMPTS[:2], group_size=2, greedy=True)
    new = token_logprobs(policy.model, after)
    assert (after.sampling_logp - new).abs().max() < 1e-4  # vLLM holds the trainer's new weights
    stale = token_logprobs(policy.model, before)
    assert (before.sampling_logp - stale).abs().max() > 1e-2  # ... which the update moved away from the old ones


def test_a_sync_that_fails_or_hangs_is_one_engine_failure():
    with pytest.raises(EngineFailure, match=r"did not finish within 0.2s"):
        within_timeout(lambda: __import__("time").sleep(5), 0.2)
    with pytest.raises(EngineFailure, match=r"failed: ValueError: bad shape"):
        within_timeout(lambda: (_ for _ in ()).throw(ValueError("bad shape\nmore")), 5)
    assert within_timeout(lambda: 7, 5) == 7


def test_a_model_vllm_cannot_run_here_is_one_line(tiny):
    model, _ = tiny  # head size 16
    with pytest.raises(GroupwiseError) as failure:
        VLLMEngine(model, build_config(None, VLLM + ["rollout.vllm.cpu_kv_cache_gb=0.05"]).rollout)
    assert str(failure.value).startswith("vLLM cannot run this model here: RuntimeError: Unsupported CPU attention "
                                         "configuration: head_dim=16")
    assert "\n" not in str(failure.value) and "head size of at least 32" in str(failure.value)


def test_without_vllm_the_engine_names_the_install_command(monkeypatch, tiny32):
    import builtins

    real = builtins.__import__

    def no_vllm(name, *args, **kwargs):
        if name == "vllm" or name.startswith("vllm."):
            raise ImportError("No module named 'vllm'")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_vllm)
    model, _ = tiny32
    with pytest.raises(GroupwiseError, match=r"needs vLLM, which is not installed here .* -- install it with "
                                             r"`bash scripts/setup.sh --vllm`"):
        VLLMEngine(model, build_config(None, VLLM + ["rollout.vllm.cpu_kv_cache_gb=0.07"]).rollout)


# ---- server mode ----------------------------------------------------------------------------------------------


def save_tiny32(folder):
    """tiny32 saved as a Hugging Face folder: what the server and a CLI run load by name."""
    model, tokenizer = build_tiny_random(seed=0, hidden=128)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture
def model_folder(tmp_path):
    return save_tiny32(tmp_path / "tiny32")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """One `groupwise serve-rollout` process on a free loopback port for this module's server tests (the last of
    them kills it); yields (url, process, model folder)."""
    root = tmp_path_factory.mktemp("server")
    folder, log = save_tiny32(root / "tiny32"), root / "server.log"
    command = [sys.executable, "-m", "groupwise.cli.main", "serve-rollout", "--model", str(folder),
               "--port", "0", "--set", "rollout.vllm.cpu_kv_cache_gb=0.1"]
    with log.open("w") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT,
                                   env=os.environ | {"OMP_NUM_THREADS": "1"})
    deadline = time.monotonic() + 180
    while not (found := re.search(r"at (http://127\.0\.0\.1:\d+)", log.read_text())):
        assert process.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
        time.sleep(0.1)
    yield found.group(1), process, folder
    process.terminate()
    process.wait(timeout=60)


def test_a_rollout_server_samples_from_the_weights_of_every_update(server, tiny32, tiny_config):
    url, _, folder = server
    model, tokenizer = tiny32
    cfg = tiny_config(f"model.name={folder}", "rollout.engine=vllm_server", f"rollout.vllm.url={url}",
                      "rollout.prompts_per_step=2", "rollout.group_size=4", "train.learning_rate=0.5",
                      "algorithm.beta=0", "lora.r=8")
    policy, before = _trained_policy(model, tokenizer, cfg)
    after = policy.sampler(tokenizer, PROMPTS[:2], group_size=2, greedy=True)
    assert (after.sampling_logp - token_logprobs(policy.model, after)).abs().max() < 1e-4
    assert (before.sampling_logp - token_logprobs(policy.model, before)).abs().max() > 1e-2


def test_a_missing_server_is_one_line_and_leaves_no_run(tmp_path, model_folder):
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{probe.getsockname()[1]}"
    run = tmp_path / "run"
    sets = [f"model.name={model_folder}", "rollout.engine=vllm_server", f"rollout.vllm.url={url}",
            "eval.before_after=false", "train.steps=2", "log.progress=false"]
    done = CliRunner().invoke(app, ["train", "--run-dir", str(run)] + [a for item in sets for a in ("--set", item)])
    assert done.exit_code == 2, done.stderr[-2000:]
    assert done.stderr.strip().splitlines()[-1].startswith(f"error: no rollout server answers at {url}: the rollout "
                                                           f"server at {url} did not answer /health")
    assert "Traceback" not in done.stderr and not run.exists()


def test_a_server_that_dies_mid_run_stops_training_with_a_checkpoint(server, tmp_path):
    url, process, model_folder = server
    run = tmp_path / "run"
    sets = [f"model.name={model_folder}", "rollout.engine=vllm_server", f"rollout.vllm.url={url}",
            "eval.before_after=false", "train.steps=40", "log.progress=false", "rollout.prompts_per_step=2",
            "rollout.group_size=2", "rollout.max_new_tokens=4", "train.save_every=1"]
    command = [sys.executable, "-m", "groupwise.cli.main", "train", "--run-dir", str(run)]
    trainer = subprocess.Popen(command + [arg for item in sets for arg in ("--set", item)], stderr=subprocess.PIPE,
                               text=True, env=os.environ | {"OMP_NUM_THREADS": "1"})
    deadline = time.monotonic() + 240
    while not (run / "metrics.jsonl").is_file() or len(read_metrics(run)) < 2:
        assert trainer.poll() is None and time.monotonic() < deadline, trainer.stderr.read()[-3000:]
        time.sleep(0.05)
    process.kill()
    _, stderr = trainer.communicate(timeout=240)
    assert trainer.returncode == 2, stderr[-3000:]
    last = stderr.strip().splitlines()[-1]
    done = max(step for step, _ in list_checkpoints(run))
    assert re.fullmatch(rf"error: the rollout server at {url} did not answer /(generate|load_weights) \(.*\) \(after "
                        rf"step {done}; the checkpoint of step {done} is in {run}; continue with `groupwise train "
                        rf"--resume {run}`\) -- restart it and resume the run; .*", last), last
    assert done == read_metrics(run)[-1]["step"] and "Traceback" not in stderr


# ---- in the training loop -----------------------------------------------------------------------------------


def _run_overrides(model_folder) -> list[str]:
    return [f"model.name={model_folder}", "rollout.engine=vllm", "rollout.prompts_per_step=4", "rollout.group_size=4",
            "rollout.max_new_tokens=6", "train.micro_batch_size=4", "train.steps=2", "eval.before_after=false",
            "log.progress=false", "data.train_size=32", "data.heldout_size=8", "train.threads=1",
            "log.samples_per_step=4", "model.dtype=float32", "train.bf16=false", "train.learning_rate=0.01",
            "rollout.vllm.cpu_kv_cache_gb=1.0"]


def test_one_and_two_processes_sample_the_same_completions_with_vllm(model_folder, tmp_path):
    """Each rank runs its own colocated engine on its share of the prompts; every completion has its own seed."""
    overrides = _run_overrides(model_folder)
    training_loop(build_config(None, overrides), tmp_path / "one")
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", "-m",
               "groupwise.cli.main", "train", "--run-dir", str(tmp_path / "two")]
    done = subprocess.run(command + [arg for item in overrides for arg in ("--set", item)], capture_output=True,
                          text=True, env=os.environ | {"OMP_NUM_THREADS": "1"}, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    one, two = (read_jsonl(tmp_path / name / "samples.jsonl") for name in ("one", "two"))
    assert [s["completions"] for s in one] == [s["completions"] for s in two] and len(one) == 8
    assert [m["world_size"] for m in read_metrics(tmp_path / "two")] == [2, 2]


def test_a_weight_sync_that_times_out_stops_the_run_with_a_checkpoint(model_folder, tmp_path, monkeypatch):
    from groupwise.rollout.vllm_backend.local import LocalLLM

    real, syncs = LocalLLM.reload, []

    def slow_after_the_first(self, weights):
        syncs.append(1)
        if len(syncs) > 1:  # the sync after step 1's update hangs
            time.sleep(3)
        return real(self, weights)

    monkeypatch.setattr(LocalLLM, "reload", slow_after_the_first)
    cfg = build_config(None, _run_overrides(model_folder) + ["train.steps=3", "rollout.vllm.sync_timeout_s=1"])
    with pytest.raises(GroupwiseError) as stop:
        training_loop(cfg, tmp_path / "run")
    assert str(stop.value) == (f"the weight sync to vLLM did not finish within 1s (after step 1; the checkpoint of "
                               f"step 1 is in {tmp_path / 'run'}; continue with `groupwise train --resume "
                               f"{tmp_path / 'run'}`) -- raise rollout.vllm.sync_timeout_s, or check the machine's "
                               "memory and load")
    assert [step for step, _ in list_checkpoints(tmp_path / "run")] == [1]
    assert [m["step"] for m in read_metrics(tmp_path / "run")] == [1]


# ---- the embedded model -------------------------------------------------------------------------------------


@pytest.mark.slow
def test_the_embedded_model_decodes_through_vllm_as_through_the_fast_engine():
    """50 held-out prompts of the default job, float32 both: token for token under greedy decoding, and the sampler
    log-probs of sampled completions within 1e-3 (mean) of the trainer's."""
    cfg = build_config(None, ["rollout.engine=vllm", "model.dtype=float32", "rollout.dtype=float32"])
    model, tokenizer = load_configured_model(cfg)
    rows = unique_rows(load_rows(cfg.data, "heldout"))[:50]
    texts = render_prompts(rows, tokenizer, cfg.data)
    engine = VLLMEngine(model, cfg.rollout)
    greedy = {"group_size": 1, "max_new_tokens": cfg.rollout.max_new_tokens, "greedy": True}
    vllm = sample_rollouts(engine, tokenizer, texts, **greedy)
    fast = sample_rollouts(FastEngine(model, torch.float32), tokenizer, texts, **greedy)
    assert vllm.completions == fast.completions
    sampled = sample_rollouts(engine, tokenizer, texts[:4], group_size=4, max_new_tokens=cfg.rollout.max_new_tokens,
                              keys=list(range(4)))
    valid = sampled.completion_mask.bool()
    gap = (sampled.sampling_logp - token_logprobs(model, sampled))[valid].abs()
    assert gap.mean() < 1e-3 and valid.sum() > 100  # 6.6e-6 on 640 tokens when measured (2026-12-05)
