"""Asynchronous rollouts (rollout.max_staleness): which weights sample which batch, resume, failures, config."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import groupwise.train.loop as loop_module
import groupwise.train.producer as producer_module
from groupwise.errors import GroupwiseError
from groupwise.train.checkpoint import list_checkpoints
from groupwise.train.loop import training_loop
from groupwise.train.metrics import read_metrics
from groupwise.train.producer import oversubscribed_warning, sampling_version, thread_split

pytestmark = pytest.mark.usefixtures("one_thread")

VARIED = "rewards.functions=[{name: format_regex, params: {pattern: '[0-9]'}}]"  # rewards vary: weights move


def test_the_batch_of_step_s_is_sampled_from_the_weights_of_step_s_minus_1_minus_k(tiny_config):
    assert [sampling_version(s, 0) for s in (1, 2, 3)] == [0, 1, 2]  # synchronous: the latest weights
    assert [sampling_version(s, 1) for s in (1, 2, 3, 4)] == [0, 0, 1, 2]
    assert [sampling_version(s, 2) for s in (1, 2, 3, 4, 5)] == [0, 0, 0, 1, 2]
    cfg = tiny_config("rollout.max_staleness=1")
    assert thread_split(cfg, cores=2) == (1, 1) and thread_split(cfg, cores=16) == (8, 8)
    assert thread_split(tiny_config("rollout.max_staleness=1", "rollout.threads=3", "train.threads=5")) == (3, 5)


def test_one_side_set_takes_what_the_other_leaves_and_too_many_threads_are_warned(tiny_config):
    cpu = torch.device("cpu")
    async_with = lambda *sets: tiny_config("rollout.max_staleness=1", *sets)  # noqa: E731
    assert thread_split(async_with("train.threads=3"), cores=4) == (1, 3)
    assert thread_split(async_with("rollout.threads=3"), cores=4) == (3, 1)
    assert oversubscribed_warning(async_with("train.threads=3"), cpu, cores=4) is None
    crowded = async_with("train.threads=2")  # what `groupwise compare` set before it split a cell's share
    assert thread_split(crowded, cores=2) == (1, 2)
    assert oversubscribed_warning(crowded, cpu, cores=2) == (
        "the rollout producer's 1 and the trainer's 2 torch threads exceed the 2 CPU cores: both sides run slower "
        "than on a split (set rollout.threads and train.threads to add up to 2)")
    assert oversubscribed_warning(tiny_config("train.threads=4"), cpu, cores=2) is None  # synchronous: one side
    assert oversubscribed_warning(crowded, torch.device("meta"), cores=2) is None  # threads matter on a CPU only


def test_under_torchrun_each_rank_splits_its_share_of_the_cores(tiny_config, monkeypatch):
    from groupwise.runtime import cores

    monkeypatch.setattr(cores.os, "sched_getaffinity", lambda pid: set(range(16)))
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")  # two ranks on this machine: 8 cores each, 4 + 4 threads
    assert cores.process_cores() == 8 and thread_split(tiny_config("rollout.max_staleness=1")) == (4, 4)
    monkeypatch.delenv("LOCAL_WORLD_SIZE")
    assert thread_split(tiny_config("rollout.max_staleness=1")) == (8, 8)


@pytest.mark.parametrize("extra", [
    # dynamic sampling: the refill rounds run in the producer
    ["algorithm.preset=dapo", "algorithm.max_sampling_rounds=3", "algorithm.overlong_cache=4"],
    ["algorithm.focal_gamma=1.0", "algorithm.dual_clip=3.0"],  # F-GRPO, dual-clip
    ["algorithm.preset=cispo"], ["algorithm.preset=gspo"],  # their own use of the importance weights
    ["rollout.engine=hf"],  # an engine that samples from the model it is given: the producer's shadow
    ["environment.path=tests/environments/env_helpers.py:TwoTurns", "rollout.max_new_tokens=4"],  # episodes
], ids=["dapo", "focal-dual-clip", "cispo", "gspo", "hf-engine", "episodes"])
def test_every_preset_engine_and_environment_trains_async(extra, tiny_config, tmp_path):
    training_loop(tiny_config("train.steps=3", "rollout.max_staleness=1", "train.learning_rate=0.01", VARIED,
                              *extra), tmp_path / "run")
    metrics = read_metrics(tmp_path / "run")
    assert [m["rollout/staleness"] for m in metrics] == [0.0, 1.0, 1.0]
    assert all(m["skipped_update"] == 0 for m in metrics) and any(m["grad_norm"] > 0 for m in metrics)


def test_importance_sampling_is_on_when_async_unless_set(tiny_config):
    assert tiny_config().algorithm.importance_sampling == "off"
    on = tiny_config("rollout.max_staleness=1")
    assert on.algorithm.importance_sampling == "token" and on.notes[0].startswith("rollout.max_staleness > 0")
    assert tiny_config("rollout.max_staleness=1", "algorithm.importance_sampling=off").algorithm.importance_sampling \
        == "off"
    with pytest.raises(GroupwiseError, match="data.difficulty_filter learns from each step's rewards"):
        tiny_config("rollout.max_staleness=1", "data.difficulty_filter={visits: 1}")


def test_with_k_1_batch_t_plus_1_was_sampled_with_the_weights_of_step_t_minus_1(tiny_config, tmp_path, monkeypatch):
    """By value: the producer's weights when it sampled each batch against the trainer's after each step."""
    sampled, trained = {}, {}

    def weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
        return {n: p.detach().clone() for n, p in model.named_parameters() if "lora_" in n}

    real_collect, real_step = producer_module.collect_batch, loop_module.grpo_step

    def recording_collect(policy, *args):
        sampled[args[-1]] = weights(policy.model)  # the last argument is the step
        return real_collect(policy, *args)

    def recording_step(policy, *args, step, **kwargs):
        trained.setdefault(0, weights(policy.model))
        metrics = real_step(policy, *args, step=step, **kwargs)
        trained[step] = weights(policy.model)
        return metrics

    monkeypatch.setattr(producer_module, "collect_batch", recording_collect)
    monkeypatch.setattr(loop_module, "grpo_step", recording_step)
    cfg = tiny_config("train.steps=5", "rollout.max_staleness=1", "train.learning_rate=0.05", VARIED)
    training_loop(cfg, tmp_path / "run")
    assert sorted(sampled) == [1, 2, 3, 4, 5]
    for step in range(1, 6):
        used = max(0, step - 2)  # batch t+1 from the weights after step t-1
        assert all(torch.equal(sampled[step][n], trained[used][n]) for n in trained[used]), step
        if step >= 3:  # and not the newer ones: the update had moved them
            assert any(not torch.equal(sampled[step][n], trained[step - 1][n]) for n in trained[used]), step
    staleness = [m["rollout/staleness"] for m in read_metrics(tmp_path / "run")]
    assert staleness == [0.0, 1.0, 1.0, 1.0, 1.0]  # never beyond k


def test_staleness_never_exceeds_k(tiny_config, tmp_path):
    training_loop(tiny_config("train.steps=4", "rollout.max_staleness=2", "rollout.threads=1", "train.threads=1",
                              VARIED), tmp_path / "run")
    assert torch.get_num_threads() == 2  # what runs after training (compare's evaluation) has both sides' threads
    metrics = read_metrics(tmp_path / "run")
    assert [m["rollout/staleness"] for m in metrics] == [0.0, 1.0, 2.0, 2.0]
    assert all(m["is_weight_mean"] > 0 and 0 <= m["is_frac_capped"] <= 1 for m in metrics)
    assert all(m["async/producer_busy_s"] > 0 and m["async/trainer_idle_s"] >= 0 for m in metrics)


def test_an_async_run_resumed_after_a_crash_ends_like_the_uninterrupted_one(tiny_config, tmp_path, monkeypatch):
    """The batches in flight at the checkpoint are dropped and sampled again from the saved weights."""
    cfg = tiny_config("train.steps=5", "train.save_every=2", "train.keep_checkpoints=5", "rollout.max_staleness=1",
                      "lora.dropout=0.1", "log.samples_per_step=1", "train.learning_rate=0.01", VARIED)
    whole, broken = tmp_path / "whole", tmp_path / "broken"
    training_loop(cfg, whole)
    real, calls = loop_module.grpo_step, {"n": 0}

    def crash_on_the_fourth(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 4:
            raise RuntimeError("simulated crash")
        return real(*args, **kwargs)

    monkeypatch.setattr(loop_module, "grpo_step", crash_on_the_fourth)
    with pytest.raises(RuntimeError, match="simulated crash"):
        training_loop(cfg, broken)
    assert [s for s, _ in list_checkpoints(broken)] == [2]
    monkeypatch.undo()
    training_loop(cfg, broken, resume=True)
    a, b = (load_file(r / "final" / "adapter_model.safetensors") for r in (whole, broken))
    assert max(float((a[k] - b[k]).abs().max()) for k in a) <= 1e-6
    untimed = [[{k: v for k, v in r.items() if not k.endswith("_s") and not k.startswith("memory/")
                 and k != "tokens_per_s"} for r in read_metrics(run)] for run in (whole, broken)]
    assert untimed[0] == untimed[1] and [r["step"] for r in untimed[1]] == [1, 2, 3, 4, 5]
    assert all(r["grad_norm"] > 0 for r in untimed[0][1:])


def _fail_on_third_batch(monkeypatch, failure) -> None:
    real, calls = producer_module.collect_batch, {"n": 0}

    def flaky(*args):
        calls["n"] += 1
        if calls["n"] == 3:
            failure()
        return real(*args)

    monkeypatch.setattr(producer_module, "collect_batch", flaky)


def test_a_producer_that_dies_stops_the_run_with_one_line_and_a_checkpoint(tiny_config, tmp_path, monkeypatch):
    def die():
        raise RuntimeError("out of luck")

    _fail_on_third_batch(monkeypatch, die)
    run = tmp_path / "run"
    with pytest.raises(GroupwiseError) as stop:
        training_loop(tiny_config("train.steps=6", "rollout.max_staleness=1", VARIED), run)
    assert str(stop.value).startswith("the rollout producer stopped: RuntimeError: out of luck (after step 2; the "
                                      f"checkpoint of step 2 is in {run}; continue with `groupwise train --resume")
    assert [s for s, _ in list_checkpoints(run)] == [2] and [m["step"] for m in read_metrics(run)] == [1, 2]


def test_a_producer_that_hangs_stops_the_run_within_its_timeout(tiny_config, tmp_path, monkeypatch):
    release = threading.Event()
    _fail_on_third_batch(monkeypatch, lambda: release.wait(60))
    run = tmp_path / "run"
    try:
        with pytest.raises(GroupwiseError) as stop:
            training_loop(tiny_config("train.steps=6", "rollout.max_staleness=1", "rollout.producer_timeout_s=1",
                                      VARIED), run)
    finally:
        release.set()
    assert str(stop.value).startswith("the rollout producer handed over no batch for step 3 within 1s (after step 2;")
    assert [s for s, _ in list_checkpoints(run)] == [2]


def test_a_sharded_policy_cannot_run_async_yet(tiny_config):
    from groupwise.train.policy import Policy

    sharded = Policy(torch.nn.Linear(2, 2), None, lora=False, sharded=True)
    with pytest.raises(GroupwiseError, match="full fine-tuning on several processes"):
        producer_module.shadow_policy(sharded, tiny_config("rollout.max_staleness=1"))




def test_the_async_experiment_compares_k_0_and_k_1_on_the_default_job():
    from groupwise.compare.spec import cell_config, load_experiment
    from groupwise.config.load import build_config

    experiment = load_experiment(Path(__file__).parents[2] / "examples" / "experiments" / "async.yaml")
    sync, stale = (cell_config(experiment, v, 0, threads=2) for v in experiment.variants)
    assert (sync.rollout.max_staleness, stale.rollout.max_staleness) == (0, 1)
    assert stale.algorithm.importance_sampling == "token"  # the correction, on by default when async
    default = build_config(None, [])
    same = ({"data": {"order_seed"}, "rollout": {"max_staleness"}, "train": {"seed", "threads", "save_every"},
             "eval": True, "log": True})  # what compare and the variants set, and the evaluation
    assert sync.model_dump(exclude=same) == default.model_dump(exclude=same)


@pytest.mark.parametrize("lora", ["true", "false"], ids=["lora", "full"])
def test_the_producer_scores_the_reference_and_the_trainer_uses_it_as_its_own(lora, tiny_config, tmp_path,
                                                                              monkeypatch):
    """The reference is the frozen weights, the same whichever version sampled: the producer scores it, off the
    trainer's time, and its values equal the trainer's own scoring of the same batch."""
    import groupwise.train.step as step_module

    real, compared = step_module.reference_and_old_logprobs, []

    def checking(policy, rollout, loss_mask, cfg, known=None, old=True):
        if known:  # the trainer's call, handed the producer's scores
            compared.append((known["ref"], real(policy, rollout, loss_mask, cfg)["ref"]))
        return real(policy, rollout, loss_mask, cfg, known, old)

    monkeypatch.setattr(step_module, "reference_and_old_logprobs", checking)  # the trainer's; not the producer's
    training_loop(tiny_config("train.steps=3", "rollout.max_staleness=1", "train.learning_rate=0.01", VARIED,
                              "algorithm.beta=0.04", f"lora.enabled={lora}"), tmp_path / "run")
    assert len(compared) == 3
    for producers, trainers in compared:
        torch.testing.assert_close(producers, trainers, rtol=0, atol=1e-5)
    assert all(m["kl"] > 0 for m in read_metrics(tmp_path / "run")[1:])  # the KL term saw the producer's values
