"""Checkpoints that survive kill -9, and stopping cleanly on SIGINT/SIGTERM.

A checkpoint is written into a hidden temporary folder inside the run folder, files first and
`manifest.json` (sha256 of every file) last, then renamed into place as `checkpoint-NNNNNN`; the
rename is atomic, so a folder with that name is complete unless the disk corrupted it afterwards,
which the checksums catch. `load_latest_intact` takes the newest checkpoint whose checksums match
and falls back to older ones; temporary folders left by an interrupted write are removed.

Full fine-tuning sharded by FSDP2 (train/fsdp.py) writes weights and optimizer state with
torch.distributed.checkpoint instead of weights.safetensors and the optimizer in trainer.pt: every rank
writes its shards into the temporary folder, then rank 0 adds the rest, the manifest, and renames.
Either format resumes on any world size.

Test hook: the environment variable GROUPWISE_TEST_SLOW_CHECKPOINT=SECONDS sleeps that long between
the files of a checkpoint, so tests can kill a run while one is being written. Never set it otherwise.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from groupwise.config.load import build_config, parse_override
from groupwise.config.schema import Config
from groupwise.errors import GroupwiseError
from groupwise.models.trained import CHECKPOINT_WEIGHTS, DCP_METADATA
from groupwise.rewards.compute import with_named_rewards
from groupwise.runtime.distributed import barrier, is_main
from groupwise.train.fsdp import load_full, load_sharded, save_sharded

if TYPE_CHECKING:
    from groupwise.train.policy import Policy

CHECKPOINT_PREFIX = "checkpoint-"
PARTIAL_PREFIX = ".partial-checkpoint-"
MANIFEST = "manifest.json"
WEIGHTS = CHECKPOINT_WEIGHTS  # trainable parameters: the LoRA adapter, or every weight (full fine-tuning)
TRAINER = "trainer.pt"  # optimizer and scheduler state
STATE = "state.pt"  # step, prompt cursor, RNG states, loop counters and the components' extra_state
SLOW_ENV = "GROUPWISE_TEST_SLOW_CHECKPOINT"
LOG_FILES = ("metrics.jsonl", "samples.jsonl")


class Stateful(Protocol):
    """A component whose state goes into checkpoints (e.g. a difficulty filter)."""

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


@dataclass
class Checkpoint:
    """A verified checkpoint folder and its loaded `state.pt`."""

    folder: Path
    step: int
    state: dict[str, Any] = field(default_factory=dict)

    @property
    def cursor(self) -> int:
        return int(self.state["cursor"])

    @property
    def loop(self) -> dict[str, Any]:
        return self.state.get("loop", {})


# ---- writing ---------------------------------------------------------------------------------------------


def checkpoint_name(step: int) -> str:
    return f"{CHECKPOINT_PREFIX}{step:06d}"


def save_checkpoint(run_dir: Path, step: int, policy: Policy, optimizer: torch.optim.Optimizer, scheduler, *,
                    cursor: int, components: dict[str, Stateful] | None = None,
                    loop: dict[str, Any] | None = None, keep: int = 2) -> Path:
    """Write checkpoint-<step> atomically (temp folder, manifest, rename); keep only the newest `keep`.

    Rank 0 calls it; with a sharded policy (FSDP2) every rank does, and only rank 0 returns the folder."""
    partial, target = run_dir / f"{PARTIAL_PREFIX}{step:06d}", run_dir / checkpoint_name(step)
    if is_main():
        remove_partial(run_dir)
        partial.mkdir()
    trainer = {"scheduler": scheduler.state_dict()}
    if getattr(policy, "sharded", False):
        barrier()  # the folder exists before any rank writes into it
        save_sharded(partial, policy.model, optimizer)  # collective: each rank its own shards
        if not is_main():
            return target
    else:
        save_file(trainable_state(policy), partial / WEIGHTS)
        trainer["optimizer"] = optimizer.state_dict()
    _pause()
    torch.save(trainer, partial / TRAINER)
    _pause()
    loop = json.loads(json.dumps(loop or {}, default=str))  # plain types: state.pt loads with weights_only
    state = {"step": step, "cursor": cursor, "rng": capture_rng(), "loop": loop,
             "extra_state": {name: c.state_dict() for name, c in (components or {}).items()}}
    torch.save(state, partial / STATE)
    _pause()
    write_manifest(partial, step)
    if target.exists():
        shutil.rmtree(target)
    os.replace(partial, target)
    _fsync_dir(run_dir)
    prune(run_dir, keep)
    return target


def trainable_state(policy: Policy) -> dict[str, torch.Tensor]:
    """The parameters being trained, on CPU (shared/tied weights appear once)."""
    return {name: p.detach().to("cpu").contiguous() for name, p in policy.model.named_parameters()
            if p.requires_grad}


def write_manifest(folder: Path, step: int) -> None:
    """sha256 of every file in `folder`, written (and synced) last."""
    files = {}
    for path in sorted(folder.iterdir()):
        _fsync_file(path)
        files[path.name] = sha256(path)
    manifest = folder / MANIFEST
    manifest.write_text(json.dumps({"step": step, "files": files}, indent=1))
    _fsync_file(manifest)
    _fsync_dir(folder)


def prune(run_dir: Path, keep: int) -> None:
    """Delete all but the newest `keep` checkpoints."""
    for _, folder in list_checkpoints(run_dir)[:-keep]:
        shutil.rmtree(folder, ignore_errors=True)


def remove_partial(run_dir: Path) -> None:
    """Remove temporary folders left by a checkpoint write that was killed."""
    for folder in run_dir.glob(f"{PARTIAL_PREFIX}*"):
        shutil.rmtree(folder, ignore_errors=True)


def _pause() -> None:
    """Test hook (GROUPWISE_TEST_SLOW_CHECKPOINT): widen the window for a kill mid-checkpoint."""
    seconds = float(os.environ.get(SLOW_ENV) or 0)
    if seconds > 0:
        time.sleep(seconds)


def _fsync_file(path: Path) -> None:
    with path.open("rb") as f:
        os.fsync(f.fileno())


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


# ---- reading ---------------------------------------------------------------------------------------------


def list_checkpoints(run_dir: Path) -> list[tuple[int, Path]]:
    """(step, folder) of every checkpoint folder, oldest first (intact or not)."""
    found = []
    for folder in Path(run_dir).glob(f"{CHECKPOINT_PREFIX}*"):
        suffix = folder.name[len(CHECKPOINT_PREFIX):]
        if folder.is_dir() and suffix.isdigit():
            found.append((int(suffix), folder))
    return sorted(found)


def is_intact(folder: Path) -> bool:
    """Whether the manifest exists, names exactly the folder's files, and every checksum matches."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
        files = manifest["files"]
        present = {p.name for p in folder.iterdir()} - {MANIFEST}
        return set(files) == present and all(sha256(folder / n) == digest for n, digest in files.items())
    except (OSError, ValueError, KeyError, TypeError):
        return False


def load_latest_intact(run_dir: Path) -> Checkpoint | None:
    """The newest checkpoint whose checksums match (older ones as fallback); None if there is none."""
    remove_partial(run_dir)
    for step, folder in reversed(list_checkpoints(run_dir)):
        if not is_intact(folder):
            continue
        try:
            state = torch.load(folder / STATE, map_location="cpu", weights_only=True)
        except Exception as err:  # noqa: BLE001 - intact but unreadable: another version wrote it
            raise GroupwiseError(f"checkpoint '{folder}' is intact but cannot be read ({type(err).__name__})",
                                 "resume with the groupwise version that wrote it") from err
        return Checkpoint(folder, step, state)
    return None


def discard_newer(run_dir: Path, step: int) -> None:
    """Delete checkpoints after `step` (they failed verification, or belong to steps about to be redone)."""
    for s, folder in list_checkpoints(run_dir):
        if s > step:
            shutil.rmtree(folder, ignore_errors=True)


def restore_checkpoint(checkpoint: Checkpoint, policy: Policy, optimizer: torch.optim.Optimizer, scheduler,
                       components: dict[str, Stateful] | None = None) -> None:
    """Load weights, optimizer, scheduler and components' state (RNG states are restored separately).

    A sharded (DCP) checkpoint loads into a model on any world size; so does a one-process checkpoint."""
    trainer = torch.load(checkpoint.folder / TRAINER, map_location="cpu", weights_only=True)
    if (checkpoint.folder / DCP_METADATA).exists():  # written by FSDP2 ranks; DCP reshards on load
        load_sharded(checkpoint.folder, policy.model, optimizer)
    elif getattr(policy, "sharded", False):  # written by one process, resumed by FSDP2 ranks
        load_full(policy.model, optimizer, load_file(checkpoint.folder / WEIGHTS), trainer["optimizer"])
    else:
        restore_weights(checkpoint.folder / WEIGHTS, policy.model)
        optimizer.load_state_dict(trainer["optimizer"])
    sampler = getattr(policy, "sampler", None)
    if sampler is not None:
        sampler.refresh()  # the rollout engine keeps its own copy of the weights: sync the restored ones
    scheduler.load_state_dict(trainer["scheduler"])
    extra = checkpoint.state.get("extra_state", {})
    for name, component in (components or {}).items():
        if name in extra:
            component.load_state_dict(extra[name])


def restore_weights(path: Path, model: torch.nn.Module) -> None:
    """Copy weights.safetensors into the model's trainable parameters (all of them must be there)."""
    weights = load_file(path)
    params = dict(model.named_parameters())
    missing = [name for name, p in params.items() if p.requires_grad and name not in weights]
    if missing or set(weights) - set(params):
        raise RuntimeError(f"checkpoint {path.parent} does not match the model (missing {missing[:3]})")
    with torch.no_grad():
        for name, tensor in weights.items():
            params[name].copy_(tensor)


def truncate_logs(run_dir: Path, step: int) -> None:
    """Keep only the records of steps <= `step` in metrics.jsonl and samples.jsonl (rewritten atomically)."""
    for name in LOG_FILES:
        path = run_dir / name
        if not path.exists():
            continue
        kept = []
        for line in path.read_text().splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue  # a line cut short by a kill
            if isinstance(record, dict) and isinstance(record.get("step"), int) and record["step"] <= step:
                kept.append(line + "\n")
        temp = path.with_name(path.name + ".tmp")
        temp.write_text("".join(kept))
        os.replace(temp, path)


# ---- random number generators ----------------------------------------------------------------------------


def capture_rng() -> dict[str, Any]:
    """Every RNG state the run draws from: python, numpy, torch CPU and (if present) CUDA."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {"python": random.getstate(), "torch": torch.get_rng_state(),
                             "numpy": [kind, keys.tolist(), pos, has_gauss, cached]}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# ---- stopping on signals ---------------------------------------------------------------------------------


class TrainingInterrupted(Exception):
    """The run stopped on SIGINT/SIGTERM after saving a checkpoint; the CLI exits with 128 + signal."""

    def __init__(self, step: int, signum: int, run_dir: Path) -> None:
        self.step, self.signum, self.run_dir = step, signum, run_dir
        super().__init__(f"interrupted at step {step}; resume with: groupwise train --resume {run_dir}")

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


class StopRequest:
    """SIGINT/SIGTERM set `signum`: the loop finishes its step, saves and stops; a second signal exits now."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, run_dir: Path | None = None) -> None:
        self.signum: int | None = None
        self.run_dir = run_dir
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():
            self._previous = {sig: signal.signal(sig, self._handle) for sig in self.SIGNALS}
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def _handle(self, signum: int, frame: object) -> None:
        if self.signum is not None:  # second signal: stop now; the last complete checkpoint is intact
            if self.run_dir is not None:
                os.write(2, (stopped_now_message(self.run_dir) + "\n").encode())
            raise SystemExit(128 + signum)
        self.signum = signum


def stopped_now_message(run_dir: Path) -> str:
    """What a second Ctrl-C leaves: the newest checkpoint folder (renamed into place only when complete)."""
    saved = list_checkpoints(run_dir)
    where = f"last checkpoint: {saved[-1][1]} (step {saved[-1][0]})" if saved else "no checkpoint saved yet"
    return f"stopped at once (second signal); {where}; resume with: groupwise train --resume {run_dir}"


# ---- the run folder --------------------------------------------------------------------------------------

RESUME_KEYS = ("train.steps", "train.save_every", "train.save_every_minutes", "train.keep_checkpoints",
               "train.max_nonfinite", "train.threads", "model.device", "log.progress", "log.tensorboard")


def resume_config(run_dir: Path, overrides: list[str]) -> Config:
    """The run's saved config.yaml; `--set` may change only keys that leave the training computation alone."""
    path = run_dir / "config.yaml"
    if not path.is_file():
        raise GroupwiseError(f"'{run_dir}' is not a run folder (it has no config.yaml)",
                             "give the --run-dir of an earlier groupwise train, or start a new run")
    saved, wanted = build_config(path).model_dump(), build_config(path, overrides)
    for item in overrides:
        keys = parse_override(item)[0]
        key = ".".join(keys)
        if key not in RESUME_KEYS and _lookup(saved, keys) != _lookup(wanted.model_dump(), keys):
            raise GroupwiseError(f"--set {key} cannot change when resuming (it changes what the run trains)",
                                 f"only {', '.join(RESUME_KEYS)} may change; start a new run for the rest")
    newest = max((step for step, _ in list_checkpoints(run_dir)), default=0)
    if newest > wanted.train.steps:
        raise GroupwiseError(f"run '{run_dir}' has a checkpoint at step {newest}, beyond train.steps="
                             f"{wanted.train.steps}", f"resume with --set train.steps={newest} or more")
    return wanted


def resume_same_job(run_dir: Path, wanted: Config, overrides: list[str]) -> Config:
    """`train --resume-if-exists` found a run in `run_dir`: continue it, if the command asks for the same job
    (its config may differ only in the keys `--resume` may change)."""
    saved, now = (_flat(with_named_rewards(c).model_dump(mode="json"))
                  for c in (build_config(run_dir / "config.yaml"), wanted))
    changed = [key for key in now if key not in RESUME_KEYS and saved.get(key) != now[key]]
    if changed:
        key = changed[0]
        raise GroupwiseError(f"run folder '{run_dir}' holds a run with another {key} ({saved.get(key)!r} there, "
                             f"{now[key]!r} now)", "give another --run-dir, or the config and --set that started "
                             "that run")
    return resume_config(run_dir, overrides)


def _flat(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{'train': {'steps': 3}} -> {'train.steps': 3} (sections only; values such as lists stay whole)."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict) and not prefix:
            out |= _flat(value, f"{key}.")
        else:
            out[prefix + key] = value
    return out


def _lookup(data: Any, keys: list[str]) -> Any:
    for key in keys:
        data = data.get(key) if isinstance(data, dict) else None
    return data


def discard_untrained(run_dir: Path, created: bool) -> None:
    """A fresh run failed before training anything: empty its folder, and remove it if this run made it."""
    if not run_dir.is_dir() or (run_dir / "metrics.jsonl").exists() or list_checkpoints(run_dir):
        return
    for path in run_dir.iterdir():
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    if created:
        run_dir.rmdir()
