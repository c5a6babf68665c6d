"""`groupwise train`: set up model, data and rewards, run the GRPO steps, write the run folder."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

import torch
from rich.markup import escape

from groupwise.config.load import dump_config
from groupwise.config.schema import Config
from groupwise.data.difficulty import DifficultyFilter, wrap_with_difficulty_filter
from groupwise.data.prompts import render_prompts, template_system_note
from groupwise.data.source import load_rows
from groupwise.data.stream import PromptStream
from groupwise.errors import GroupwiseError
from groupwise.evaluate.accuracy import evaluate_rows
from groupwise.evaluate.heldout_eval import unique_rows
from groupwise.models.load import resolve_device
from groupwise.models.precision import slow_bf16_warning
from groupwise.rewards.answer_check import answer_format_warning
from groupwise.rewards.columns import check_reward_columns, golds_of
from groupwise.rewards.compute import configured_rewards, with_named_rewards
from groupwise.rollout.protocol import EngineFailure
from groupwise.runtime.distributed import (
    all_max,
    barrier,
    check_divisible,
    init_distributed,
    is_main,
    run_on_main,
)
from groupwise.runtime.progress import StepProgress, count_progress, output_console
from groupwise.runtime.seeding import seed_everything
from groupwise.train.checkpoint import (
    Checkpoint,
    Stateful,
    StopRequest,
    TrainingInterrupted,
    discard_newer,
    load_latest_intact,
    restore_checkpoint,
    restore_rng,
    save_checkpoint,
    truncate_logs,
)
from groupwise.train.fsdp import full_state
from groupwise.train.inputs import TrainInputs
from groupwise.train.meta_init import load_training_model
from groupwise.train.metrics import MetricsLog, write_samples
from groupwise.train.optim import build_optimizer
from groupwise.train.policy import Policy, wrap_policy
from groupwise.train.producer import (
    RolloutProducer,
    WeightSnapshots,
    oversubscribed_warning,
    producer_metrics,
    thread_split,
)
from groupwise.train.step import grpo_step
from groupwise.train.trackers import open_trackers


def training_loop(cfg: Config, run_dir: Path, *, console=None, resume: bool = False,
          components: dict[str, Stateful] | None = None, inputs: TrainInputs | None = None) -> dict[str, Any]:
    """Run the job (`resume`: from the newest intact checkpoint); returns the summary (run_dir/summary.json).

    `components`: more stateful parts saved in checkpoints, name -> object with state_dict/load_state_dict.
    `inputs`: reward functions, a loaded model and an on_step callback given from Python (groupwise.train).
    """
    inputs = inputs or TrainInputs()
    console = console or output_console(stderr=True)
    run_dir.mkdir(parents=True, exist_ok=True)
    init_distributed(cfg.model.device)  # under torchrun: join the group; rank 0 alone writes the run folder
    check_divisible(cfg.rollout.prompts_per_step)
    if is_main():
        (run_dir / "config.yaml").write_text(dump_config(with_named_rewards(cfg)))  # paths absolute, rewards named
    asynchronous = cfg.rollout.max_staleness > 0  # a producer thread samples ahead (train/producer.py)
    producer_threads, trainer_threads = thread_split(cfg)
    if cfg.train.threads or asynchronous:
        torch.set_num_threads(trainer_threads)
    seed_everything(cfg.train.seed)
    device = resolve_device(cfg.model.device)  # a device that is not there fails before anything loads
    rewards = inputs.rewards if inputs.rewards is not None else configured_rewards(cfg)  # before the model
    train_rows = load_rows(cfg.data, "train")  # bad rewards and data fail fast, before a big model loads
    check_reward_columns(rewards, train_rows, "training data")
    for warning in (answer_format_warning(train_rows, cfg),
                    slow_bf16_warning(cfg.model.dtype, cfg.train.bf16, device), oversubscribed_warning(cfg, device)):
        if warning and is_main():
            console.print(f"[yellow]warning:[/yellow] {escape(warning)}")
    heldout = unique_rows(load_rows(cfg.data, "heldout"))[: cfg.eval.num_problems] if _evaluates(cfg) else []
    if heldout:
        check_reward_columns(rewards, heldout, "held-out data")
    model, tokenizer = ((inputs.model, inputs.tokenizer) if inputs.model is not None
                        else load_training_model(cfg))  # on model.device, in the training precision; FSDP2: sharded
    if is_main() and (note := template_system_note(train_rows, tokenizer, cfg.data)):
        console.print(f"note: {escape(note)}")
    order_seed = cfg.data.seed if cfg.data.order_seed is None else cfg.data.order_seed
    stream = PromptStream(train_rows, render_prompts(train_rows, tokenizer, cfg.data), order_seed)
    heldout_texts = render_prompts(heldout, tokenizer, cfg.data)
    components = dict(components or {})  # stateful parts saved in checkpoints (register yours here)
    prompts = wrap_with_difficulty_filter(stream, cfg.data.difficulty_filter, cfg.algorithm.success_threshold)
    if isinstance(prompts, DifficultyFilter):
        components["difficulty_filter"] = prompts
    snapshots = WeightSnapshots(cfg.rollout.max_staleness)
    if asynchronous:  # the weights the batches in flight were sampled from
        components["async_weights"] = snapshots
    checkpoint = resume_point_on_every_rank(run_dir, cfg, console) if resume else None
    state = dict(checkpoint.loop) if checkpoint else {}  # loop counters saved with the checkpoint
    summary: dict[str, Any] = {"run_dir": str(run_dir)}
    if cfg.eval.before_after:
        summary["base"] = state.get("base") or _evaluate(model, tokenizer, heldout, heldout_texts, rewards,
                                                         cfg, console, "base")
    policy = wrap_policy(model, cfg, sampler=not asynchronous)  # async: the producer's shadow samples
    optimizer, scheduler = build_optimizer(policy.trainable_parameters(), cfg.train)
    start = saved = checkpoint.step if checkpoint else 0
    producer = None
    if asynchronous:  # built before the RNG is restored: its sampler's copy draws random initial weights
        producer = RolloutProducer(policy, tokenizer, cfg, rewards, prompts, lambda: stream.cursor, snapshots,
                                   start, producer_threads)
    if checkpoint:
        restore_checkpoint(checkpoint, policy, optimizer, scheduler, components)
        stream.cursor, stream.order = checkpoint.cursor, []
        restore_rng(checkpoint.state["rng"])  # last: nothing may draw random numbers before the next step
    log = MetricsLog(run_dir, cfg.log.tensorboard or "tensorboard" in cfg.log.report_to,
                     open_trackers(cfg, run_dir)) if is_main() else None
    started = time.perf_counter() - state.get("train_seconds", 0.0)
    trained_cursor = stream.cursor  # where the prompts of the next batch to train on start
    if producer is not None:  # the weights it samples the next batches from
        snapshots.publish(start, policy.model)
    low_streak, nonfinite = state.get("low_streak", 0), state.get("nonfinite", 0)
    rollout_tokens = state.get("rollout_tokens", 0)  # completion tokens sampled so far, dropped groups included
    progress_bar = StepProgress(cfg.train.steps, enabled=cfg.log.progress and is_main(), console=console)
    last_save = time.monotonic()  # train.save_every_minutes counts from here and from each checkpoint
    def checkpoint_now(done: int) -> None:
        """A checkpoint of step `done`, with the loop's counters as they stand."""
        nonlocal saved, last_save
        loop = {"low_streak": low_streak, "nonfinite": nonfinite, "base": summary.get("base"),
                "train_seconds": time.perf_counter() - started, "rollout_tokens": rollout_tokens}
        if is_main() or policy.sharded:  # replicated: rank 0 writes; FSDP2: every rank its shards
            save_checkpoint(run_dir, done, policy, optimizer, scheduler, cursor=trained_cursor,
                            components=components, loop=loop, keep=cfg.train.keep_checkpoints)
        saved, last_save = done, time.monotonic()

    with StopRequest(run_dir) as stop, progress_bar as progress, producer or contextlib.nullcontext():
        for step in range(start + 1, cfg.train.steps + 1):
            try:
                if producer is None:
                    metrics = grpo_step(policy, tokenizer, optimizer, scheduler, cfg, rewards, prompts, step=step)
                    trained_cursor = stream.cursor
                else:  # sampled and scored meanwhile by the producer, from the weights of step - 1 - k
                    waited = time.perf_counter()
                    produced = producer.take(step)
                    idle = all_max(time.perf_counter() - waited)
                    metrics = grpo_step(policy, tokenizer, optimizer, scheduler, cfg, rewards, prompts, step=step,
                                        collected=(produced.batch, produced.timings))
                    metrics |= producer_metrics(produced, step, idle)
                    metrics["step_s"] = round(metrics["step_s"] + idle, 3)  # the trainer's wall time, waits included
                    trained_cursor = produced.cursor
                    snapshots.publish(step, policy.model)  # at once: the producer samples batch step + 1 + k
            except EngineFailure as failure:  # nothing of this step is kept: the last finished one is saved
                stream.cursor, stream.order = trained_cursor, []
                if saved < step - 1:
                    checkpoint_now(step - 1)
                raise engine_stop(failure, step - 1, run_dir) from failure
            batch = metrics.pop("_batch")
            rollout_tokens += metrics["sampled_tokens"]
            metrics["rollout_tokens"] = rollout_tokens
            if isinstance(prompts, DifficultyFilter):
                metrics |= prompts.after_step(batch.rows, batch.rewards)
            if cfg.eval.every and step % cfg.eval.every == 0:
                result = evaluate_rows(policy.model, tokenizer, heldout, heldout_texts, rewards, cfg, samples=0)
                metrics["eval/greedy_accuracy"] = result["greedy_accuracy"]
            if log is not None:
                log.write(step, metrics)
            if cfg.log.samples_per_step and is_main():
                shown = batch.rows[: cfg.log.samples_per_step]
                write_samples(run_dir / "samples.jsonl", step, batch, cfg.log.samples_per_step,
                              rendered=render_prompts(shown, tokenizer, cfg.data),
                              golds=[golds_of(rewards, row) for row in shown])
            low_streak = low_streak + 1 if metrics["learnable_fraction"] < cfg.log.learnable_warn_below else 0
            if low_streak == cfg.log.learnable_warn_steps and is_main():
                progress.warn(learnability_warning(metrics, cfg))
            if is_main():
                progress.update(step, metrics)
            nonfinite = nonfinite + 1 if metrics.get("skipped_update", 0) > 0 else 0
            if nonfinite >= cfg.train.max_nonfinite:
                raise nonfinite_error(nonfinite, step, saved, run_dir)
            signum = int(all_max(stop.signum or 0))  # distributed: a signal to any rank stops every rank here
            halt = bool(all_max(float(inputs.stop_after(step, metrics))))  # on_step returned False on some rank
            if nonfinite == 0 and (signum or halt or step == cfg.train.steps or _due(step, cfg)
                                   or all_max(float(_overdue(last_save, cfg)))):
                checkpoint_now(step)
            if signum:
                raise TrainingInterrupted(saved, signum, run_dir)
            if halt:
                summary["stopped_at_step"] = step
                break
            if producer is None and step < cfg.train.steps:
                try:  # the engine takes this step's update now: a failing sync stops here, with a checkpoint
                    policy.refresh_sampler()
                except EngineFailure as failure:
                    if saved < step:
                        checkpoint_now(step)
                    raise engine_stop(failure, step, run_dir) from failure
    if asynchronous:  # the evaluation after training gets the producer's threads too
        torch.set_num_threads(producer_threads + trainer_threads)
    summary["train_minutes"] = round((time.perf_counter() - started) / 60, 2)
    summary["rollout_tokens"] = rollout_tokens
    if log is not None:
        log.close()
    state = full_state(policy.model) if policy.sharded else None  # FSDP2: every rank joins the gather
    if is_main():
        save_final(policy, tokenizer, run_dir / "final", state)
    inputs.trained_model = policy.model
    if cfg.eval.before_after:
        summary["trained"] = _evaluate(policy.model, tokenizer, heldout, heldout_texts, rewards, cfg, console,
                                       "trained")
        summary["gain_points"] = round(100 * (summary["trained"]["greedy_accuracy"]
                                              - summary["base"]["greedy_accuracy"]), 1)
    if is_main():
        (run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    barrier()  # every rank returns once the run folder is complete
    return summary


def _due(step: int, cfg: Config) -> bool:
    return bool(cfg.train.save_every) and step % cfg.train.save_every == 0


def _overdue(last_save: float, cfg: Config) -> bool:
    """train.save_every_minutes have passed since the last checkpoint (time.monotonic() of `last_save`)."""
    minutes = cfg.train.save_every_minutes
    return minutes > 0 and time.monotonic() - last_save >= 60 * minutes


def resume_point_on_every_rank(run_dir: Path, cfg: Config, console=None) -> Checkpoint | None:
    """Rank 0 picks the checkpoint and cuts the logs back; then every rank loads that checkpoint."""
    return run_on_main(lambda: resume_point(run_dir, cfg, console))


def resume_point(run_dir: Path, cfg: Config, console=None) -> Checkpoint | None:
    """The newest intact checkpoint; newer broken ones are deleted and the logs cut back to its step."""
    checkpoint = load_latest_intact(run_dir)
    step = checkpoint.step if checkpoint else 0
    if step > cfg.train.steps:
        raise GroupwiseError(f"the run's checkpoint is at step {step}, beyond train.steps={cfg.train.steps}",
                             f"resume with --set train.steps={step} or more")
    discard_newer(run_dir, step)
    truncate_logs(run_dir, step)
    (run_dir / "summary.json").unlink(missing_ok=True)
    where = f"checkpoint {checkpoint.folder.name}" if checkpoint else "the start (no intact checkpoint yet)"
    (console or output_console(stderr=True)).print(f"resuming from {where} at step {step}")
    return checkpoint


def engine_stop(failure: GroupwiseError, done: int, run_dir: Path) -> GroupwiseError:
    """The rollout engine failed after step `done`: its line, where the run stands, and how to continue."""
    kept = (f"the checkpoint of step {done} is in {run_dir}; continue with `groupwise train --resume {run_dir}`"
            if done else "nothing was trained yet")
    return GroupwiseError(f"{failure.problem} (after step {done}; {kept})", failure.fix)


def nonfinite_error(count: int, step: int, saved: int, run_dir: Path) -> GroupwiseError:
    """The run diverged: name it and the fix; the checkpoint of step `saved` is the last good one."""
    kept = f"the last good checkpoint (step {saved}) is kept in {run_dir}" if saved else "nothing was saved"
    return GroupwiseError(f"{count} non-finite updates in a row (NaN/inf loss or gradients) at step {step}; "
                          f"{kept}", "lower train.learning_rate or train.max_grad_norm, use model.dtype "
                          "float32 or bfloat16 (not float16), check the reward functions, start a new run")


def _evaluates(cfg: Config) -> bool:
    return cfg.eval.before_after or cfg.eval.every > 0


def _evaluate(model, tokenizer, rows, texts, rewards, cfg: Config, console, label: str) -> dict[str, Any]:
    with count_progress(len(rows), f"eval {label}", enabled=cfg.log.progress, console=console) as advance:
        return evaluate_rows(model, tokenizer, rows, texts, rewards, cfg, progress=advance)


def learnability_warning(metrics: dict[str, Any], cfg: Config) -> str:
    """Name the likely reason groups stopped differing, and the fix."""
    if metrics.get("truncated_fraction", 0) > 0.5:
        cause = "most completions are truncated: raise rollout.max_new_tokens or reward shorter answers"
    elif metrics.get("success_rate", 0) > 0.5:
        cause = "the task is too easy (all-correct groups): use `groupwise select --keep hardest:0.1`"
    elif metrics.get("reward/std", 0) == 0 and metrics.get("reward/mean", 0) == 0:
        cause = ("no completion earns any reward: the task is too hard or a reward function never matches; "
                 "check samples.jsonl, use `groupwise select`, a larger rollout.group_size or "
                 "algorithm.dynamic_sampling: true")
    else:
        cause = "use a larger rollout.group_size or algorithm.dynamic_sampling: true"
    return (f"learnable fraction below {cfg.log.learnable_warn_below} for {cfg.log.learnable_warn_steps} steps: "
            f"{cause}")


def save_final(policy: Policy, tokenizer, folder: Path, state: dict[str, torch.Tensor] | None = None) -> None:
    """The adapter (LoRA) or full model with the tokenizer in Hugging Face format, written then renamed;
    `state`: the whole weights when the model is sharded."""
    partial = folder.with_name(f".{folder.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    policy.model.save_pretrained(partial, state_dict=state)
    tokenizer.save_pretrained(partial)
    if folder.exists():
        shutil.rmtree(folder)
    os.replace(partial, folder)
