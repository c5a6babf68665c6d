"""`--nproc N`: the same command in N worker processes on this machine, started by torch's elastic agent (what
torchrun runs) inside this process, so that this process decides what the user sees.

- **Signals.** Ctrl-C reaches only this process (the agent starts every worker in a session of its own), and
  SIGTERM may be sent to it alone: it hands each signal to every worker once. The workers finish their step,
  save one checkpoint and exit 130 or 143; so does this process. A second signal is handed on too: the workers
  stop at once (their last complete checkpoint stays).
- **Errors.** A worker writes its `error:` line to a file in GROUPWISE_ERROR_DIR instead of stderr; when the
  workers have ended, this process prints rank 0's line (else the lowest rank's) once and exits 2. A worker that
  crashes keeps its traceback; this process exits with that worker's code, without torchrun's summary tree.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

from groupwise.cli.errors import ERROR_DIR_ENV, EXIT_USAGE

AGENT_LOGGERS = ("torch.distributed.elastic", "torch.distributed.launcher")


def worker_arguments(argv: list[str], extra: list[str]) -> list[str]:
    """The command line each worker runs: this one without --nproc, plus `extra` (e.g. the chosen --run-dir)."""
    args, skip = [], False
    for arg in argv:
        if skip or arg == "--nproc" or arg.startswith("--nproc="):
            skip = arg == "--nproc"
            continue
        args.append(arg)
    return args + extra


def run_workers(nproc: int, args: list[str], verbose: bool = False) -> int:
    """`groupwise ARGS` in `nproc` processes; returns the exit code for this process: the workers' (128 +
    signal when stopped by one), or 2 after printing one worker's error line."""
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    if not verbose:
        for name in AGENT_LOGGERS:  # "Sending process ... closing signal", the failure tree: not the user's news
            logging.getLogger(name).setLevel(logging.CRITICAL)
    config = LaunchConfig(min_nodes=1, max_nodes=1, nproc_per_node=nproc, run_id=str(uuid.uuid4()),
                          rdzv_backend="c10d", rdzv_endpoint="localhost:0", max_restarts=0, monitor_interval=0.1,
                          signals_to_handle="SIGHUP,SIGQUIT")  # SIGINT/SIGTERM: ours, handed on below
    received: list[int] = []
    with tempfile.TemporaryDirectory(prefix="groupwise-errors-") as errors, _environment(errors, nproc), \
            _handing_on_signals(received):
        try:
            elastic_launch(config, sys.executable)("-m", "groupwise.cli.main", *args)
            code = 0
        except ChildFailedError as failed:
            code = failure_code(failed.failures)
        except _StoppedBeforeWorkers as stop:
            code = 128 + stop.signum
        line = first_error_line(Path(errors))
    if line is not None:
        print(line, file=sys.stderr)
        return EXIT_USAGE
    return 128 + received[0] if received and code else code


def failure_code(failures: dict) -> int:
    """Rank 0's exit code if it failed, else the lowest failed rank's; a signal's death (-N) as 128 + N."""
    code = failures[min(failures)].exitcode
    return 128 - code if code < 0 else code


def first_error_line(folder: Path) -> str | None:
    """The error line rank 0 wrote, else the lowest rank's (files rank-N.txt); None when no worker wrote one."""
    found = sorted(folder.glob("rank-*.txt"), key=lambda p: int(p.stem.split("-")[1]))
    return found[0].read_text().strip() if found else None


@contextlib.contextmanager
def _environment(errors: str, nproc: int) -> Iterator[None]:
    """What the workers inherit: where to write error lines, and a fair share of the cores (torchrun gives each
    worker one thread when OMP_NUM_THREADS is unset; train.threads still decides)."""
    saved = {name: os.environ.get(name) for name in (ERROR_DIR_ENV, "OMP_NUM_THREADS")}
    os.environ[ERROR_DIR_ENV] = errors
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


class _StoppedBeforeWorkers(Exception):
    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


@contextlib.contextmanager
def _handing_on_signals(received: list[int]) -> Iterator[None]:
    """SIGINT/SIGTERM handed to every worker's process group; before any worker exists, the launch stops."""

    def hand_on(signum: int, frame: object) -> None:
        received.append(signum)
        workers = child_pids()
        if not workers:
            raise _StoppedBeforeWorkers(signum)
        for pid in workers:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signum)  # each worker leads its own session: its children get it too

    previous = {sig: signal.signal(sig, hand_on) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def child_pids() -> list[int]:
    """The processes this one started (the workers), read from /proc."""
    me, found = os.getpid(), []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # ended meanwhile
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == me:  # field 4, after the command name in parentheses
            found.append(int(entry.name))
    return found
