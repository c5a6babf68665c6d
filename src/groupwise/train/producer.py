"""Asynchronous rollouts (`rollout.max_staleness` = k > 0): a producer thread samples and scores the batch of step s
from the weights of step s-1-k while the trainer updates on an earlier batch (docs/async.md).

Which weights sample which batch is fixed by k alone, never by timing: the trainer publishes a snapshot of its
trainable weights after every step, and the producer waits for version s-1-k before it samples batch s. With
each completion's random stream keyed by (seed, step, prompt, sample), the same seed and k give the same run on
one process or several, and a resumed run (which regenerates the batches in flight from the snapshots saved in
its checkpoint) equals an uninterrupted one.

The producer samples from a shadow of the policy: the policy's frozen weights shared, its trainable ones copied
(LoRA: the adapter; full fine-tuning: the whole model), so the trainer's updates never reach a batch being
sampled. Its object collectives (dynamic sampling, batch-wide advantages, failure checks) run on a process group
of their own, beside the trainer's.
"""

from __future__ import annotations

import copy
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from groupwise.config.schema import Config
from groupwise.environments.registry import configured_environment
from groupwise.errors import GroupwiseError
from groupwise.rewards.compute import RewardFunction
from groupwise.rollout.protocol import EngineFailure
from groupwise.rollout.sampler import Sampler
from groupwise.runtime.cores import process_cores, split_cores
from groupwise.runtime.distributed import collectives_on, side_group
from groupwise.train.policy import Policy
from groupwise.train.step import Batch, collect_batch, completion_loss_mask, reference_and_old_logprobs

Rows = list[dict[str, Any]]


class ProducerFailure(EngineFailure):
    """The producer died or delivered nothing in time: the loop saves the last finished step, then stops."""


def sampling_version(step: int, max_staleness: int) -> int:
    """The weights that sample the batch of `step` (1-based): those after step s-1-k, the start's below 1."""
    return max(0, step - 1 - max_staleness)


def thread_split(cfg: Config, cores: int | None = None) -> tuple[int, int]:
    """(producer, trainer) torch threads: rollout.threads and train.threads; one left unset takes the cores the
    other leaves (at least 1), both unset split them in half. `cores`: this process's share (`process_cores`)."""
    cores = cores or process_cores()
    producer, trainer = cfg.rollout.threads, cfg.train.threads
    if producer is None and trainer is None:
        return split_cores(cores)
    producer = producer or max(1, cores - trainer)
    return producer, trainer or max(1, cores - producer)


def oversubscribed_warning(cfg: Config, device: torch.device, cores: int | None = None) -> str | None:
    """An async run on a CPU whose producer and trainer threads add up to more than its cores (its share of them
    under torchrun)."""
    cores = cores or process_cores()
    producer, trainer = thread_split(cfg, cores)
    if cfg.rollout.max_staleness == 0 or device.type != "cpu" or producer + trainer <= cores:
        return None
    return (f"the rollout producer's {producer} and the trainer's {trainer} torch threads exceed the {cores} CPU "
            f"cores: both sides run slower than on a split (set rollout.threads and train.threads to add up to "
            f"{cores})")


class WeightSnapshots:
    """The trainable weights after each recent step, by version (the step count), for the producer to sample
    from; kept in checkpoints, so a resumed run samples its first k batches from the same weights."""

    def __init__(self, max_staleness: int) -> None:
        self.max_staleness = max_staleness
        self.versions: dict[int, dict[str, torch.Tensor]] = {}
        self.changed = threading.Condition()

    def publish(self, version: int, model: torch.nn.Module) -> None:
        """The weights after `version` steps; versions no batch to come samples from are dropped."""
        weights = {name: p.detach().clone() for name, p in model.named_parameters() if p.requires_grad}
        with self.changed:
            self.versions[version] = weights
            for old in [v for v in self.versions if v < version - self.max_staleness]:
                del self.versions[old]
            self.changed.notify_all()

    def wait_for(self, version: int, stop: threading.Event) -> dict[str, torch.Tensor] | None:
        """The weights of `version` once published (None: stopped meanwhile)."""
        with self.changed:
            self.changed.wait_for(lambda: version in self.versions or stop.is_set() or self._dropped(version))
            if self._dropped(version):
                raise RuntimeError(f"the weights of step {version} are no longer kept (a bug: report it)")
            return None if stop.is_set() else self.versions[version]

    def _dropped(self, version: int) -> bool:
        """`version` will never be available: it is older than every kept one."""
        return version not in self.versions and bool(self.versions) and version < min(self.versions)

    def wake(self) -> None:
        with self.changed:
            self.changed.notify_all()

    def state_dict(self) -> dict[str, Any]:
        """The versions the batches after the newest one still need (the newest is the checkpoint's model)."""
        with self.changed:
            newest = max(self.versions, default=0)
            return {"versions": {v: w for v, w in self.versions.items() if v < newest}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        with self.changed:
            self.versions = dict(state["versions"])


@dataclass
class Produced:
    """One batch from the producer, with what the trainer logs of it."""

    step: int
    version: int  # sampled from the weights after this many steps
    batch: Batch
    timings: dict[str, float]  # generate_s, reward_s
    cursor: int  # the prompt stream's position after this batch drew its prompts
    busy_s: float  # the producer's time sampling and scoring this batch
    idle_s: float  # ... and waiting for its weights


def shadow_policy(policy: Policy, cfg: Config) -> Policy:
    """A copy of the policy to sample from: frozen weights shared, trainable ones copied, its own sampler."""
    if policy.sharded:
        raise GroupwiseError("rollout.max_staleness > 0 with full fine-tuning on several processes (FSDP2) is not "
                             "supported yet: the producer would gather sharded weights beside the trainer",
                             "use LoRA (lora.enabled: true), one process, or rollout.max_staleness 0")
    shared = {id(p): p for p in policy.model.parameters() if not p.requires_grad}
    model = copy.deepcopy(policy.model, memo=shared).eval().requires_grad_(False)  # sampled from, never trained
    sampler = Sampler(model, cfg.rollout, environment=configured_environment(cfg))
    return Policy(model, policy.reference, lora=policy.lora, sampler=sampler, bf16=policy.bf16)  # frozen: shared


class RolloutProducer:
    """Samples and scores the batches of steps start+1 .. cfg.train.steps in a thread, each from the weights
    `sampling_version` names; `take(step)` hands them to the trainer in order."""

    def __init__(self, policy: Policy, tokenizer, cfg: Config, rewards: list[RewardFunction],
                 prompts: Callable[[int], tuple[Rows, list[str]]], cursor: Callable[[], int],
                 snapshots: WeightSnapshots, start: int, threads: int) -> None:
        self.shadow = shadow_policy(policy, cfg)
        self.tokenizer, self.cfg, self.rewards, self.prompts, self.cursor = tokenizer, cfg, rewards, prompts, cursor
        self.snapshots, self.start, self.threads = snapshots, start, threads
        self.ready: dict[int, Produced] = {}
        self.error: BaseException | None = None
        self.stop = threading.Event()
        self.group = side_group()  # every rank, in the same order, on the main thread
        self.thread = threading.Thread(target=self._run, name="groupwise-rollout-producer", daemon=True)

    def __enter__(self) -> RolloutProducer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop after the batch in hand (the thread is a daemon: a batch still being sampled ends with the process)."""
        self.stop.set()
        self.snapshots.wake()
        self.thread.join(timeout=1.0)

    def take(self, step: int) -> Produced:
        """The batch of `step`, waiting up to rollout.producer_timeout_s for it."""
        timeout = self.cfg.rollout.producer_timeout_s
        with self.snapshots.changed:
            self.snapshots.changed.wait_for(lambda: step in self.ready or self.error is not None, timeout)
            if step in self.ready:  # the batches produced before a failure are trained on first
                return self.ready.pop(step)
            if self.error is not None:
                raise self._failure()
            raise ProducerFailure(f"the rollout producer handed over no batch for step {step} within {timeout:g}s",
                                  "raise rollout.producer_timeout_s, or check the rewards and the engine (a hang "
                                  "there stops the producer)")

    def _failure(self) -> GroupwiseError:
        error = self.error
        if isinstance(error, GroupwiseError):  # a bad reward or row: the same line as without a producer
            return error
        return ProducerFailure(f"the rollout producer stopped: {type(error).__name__}: {error}",
                               "run `groupwise train --resume` on the run folder; if it stops again, report it "
                               "with the run's log")

    def _run(self) -> None:
        torch.get_num_threads()  # this thread's own OpenMP setting first, then its count (the trainer keeps its own)
        torch.set_num_threads(self.threads)
        try:
            with collectives_on(self.group):
                for step in range(self.start + 1, self.cfg.train.steps + 1):
                    produced = self._produce(step)
                    if produced is None:
                        return
                    with self.snapshots.changed:
                        self.ready[step] = produced
                        self.snapshots.changed.notify_all()
        except BaseException as err:  # noqa: BLE001 - handed to the trainer, which stops with it
            with self.snapshots.changed:
                self.error = err
                self.snapshots.changed.notify_all()

    def _produce(self, step: int) -> Produced | None:
        version = sampling_version(step, self.cfg.rollout.max_staleness)
        waited = time.perf_counter()
        weights = self.snapshots.wait_for(version, self.stop)
        if weights is None:
            return None
        began = time.perf_counter()
        own = dict(self.shadow.model.named_parameters())
        with torch.no_grad():
            for name, value in weights.items():
                own[name].copy_(value)
        self.shadow.sampler.refresh()
        timings: dict[str, float] = {}
        batch = collect_batch(self.shadow, self.tokenizer, self.cfg, self.rewards, self.prompts, timings, step)
        # the reference (beta > 0) is the frozen weights, the same for every version: scored here, off the trainer
        mask = completion_loss_mask(batch.rollout, self.cfg.algorithm.overlong_filter)
        batch.fixed = reference_and_old_logprobs(self.shadow, batch.rollout, mask, self.cfg, old=False)
        done = time.perf_counter()
        return Produced(step, version, batch, timings, self.cursor(), done - began, began - waited)


def producer_metrics(produced: Produced, step: int, trainer_idle_s: float) -> dict[str, float]:
    """What async costs and buys in one step: the batch's age in updates, and who waited for whom."""
    seconds = {"async/producer_busy_s": produced.busy_s, "async/producer_idle_s": produced.idle_s,
               "async/trainer_idle_s": trainer_idle_s}
    return {"rollout/staleness": float(step - 1 - produced.version)} | {k: round(v, 3) for k, v in seconds.items()}
