"""Shared by the side-by-side benchmarks: child processes, their peak RSS, steady-step medians, output."""

from __future__ import annotations

import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

RECORD_PREFIX = "@@bench "  # a child's result lines start with this; everything else it prints is passed on


@dataclass
class ChildResult:
    """What one benchmark child process left behind: its result records, exit code, peak RSS and wall time."""

    records: list[dict[str, Any]] = field(default_factory=list)
    returncode: int = 0
    peak_rss_mib: float = 0.0
    wall_s: float = 0.0

    @property
    def record(self) -> dict[str, Any] | None:
        """The child's last result record, or None when it wrote none."""
        return self.records[-1] if self.records else None


def report(record: dict[str, Any]) -> None:
    """In a child: hand one result record to the parent (a marked JSON line on stdout)."""
    print(RECORD_PREFIX + json.dumps(record), flush=True)


def emit(record: dict[str, Any]) -> None:
    """In the parent: print one result as a plain JSON line."""
    print(json.dumps(record), flush=True)


def run_child(cmd: Sequence[str], env: dict[str, str] | None = None) -> ChildResult:
    """Run `cmd`, collect its marked records and the peak RSS of it and its descendants (wait4's ru_maxrss).

    wait4 reports the rusage of exactly this child (max RSS over itself and the children it reaped), unlike
    getrusage(RUSAGE_CHILDREN), whose ru_maxrss is the largest of all children ever waited for and so cannot
    be differenced between two runs. Unmarked output is copied to stderr as it comes, for progress.
    """
    result = ChildResult()
    start = time.perf_counter()
    proc = subprocess.Popen(list(cmd), stdout=subprocess.PIPE, text=True, env=env, bufsize=1)
    assert proc.stdout is not None

    def pump() -> None:
        for line in proc.stdout:
            if line.startswith(RECORD_PREFIX):
                result.records.append(json.loads(line[len(RECORD_PREFIX):]))
            else:
                sys.stderr.write(line)
                sys.stderr.flush()

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    try:
        _, status, usage = os.wait4(proc.pid, 0)
    except KeyboardInterrupt:
        proc.terminate()
        raise
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here: Popen must not wait for it again
    reader.join()
    proc.stdout.close()
    result.wall_s = time.perf_counter() - start
    result.returncode = proc.returncode
    result.peak_rss_mib = usage.ru_maxrss / 1024  # Linux reports KiB
    return result


def child_env(threads: int | None, torchao: bool = False) -> dict[str, str]:
    """The parent's environment, offline, unbuffered, with the CPU thread count pinned when given; with `torchao`,
    torchao's off-path install (.venv/lowbit, `scripts/setup.sh --dev`) on PYTHONPATH where it exists
    (train.optimizer adamw_8bit needs it; elsewhere transformers would import it in every process)."""
    env = dict(os.environ)
    env.update({"PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
                "TOKENIZERS_PARALLELISM": "false", "TRANSFORMERS_VERBOSITY": "warning"})
    if threads:
        env.update({"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)})
    lowbit = Path(__file__).resolve().parents[1] / ".venv" / "lowbit"
    if torchao and lowbit.is_dir():
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(lowbit), env.get("PYTHONPATH")]))
    return env


def steady(values: Sequence[float]) -> list[float]:
    """The steady steps: all but the first (warm-up, lazy initialisation), unless there is only one."""
    return list(values[1:]) if len(values) > 1 else list(values)


def median_steady(values: Sequence[float]) -> float | None:
    """Median of the steady steps, or None when there are no steps."""
    rest = steady(values)
    return statistics.median(rest) if rest else None


def share(parts: Sequence[float], totals: Sequence[float]) -> float | None:
    """Fraction of the summed steady-step time spent in one phase."""
    total = sum(steady(totals))
    return sum(steady(parts)) / total if total > 0 else None


def rounded(value: float | None, digits: int = 2) -> float | None:
    return None if value is None else round(value, digits)


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    """numerator / denominator rounded to 2 digits, None when either is missing or the denominator is 0."""
    if numerator is None or not denominator:
        return None
    return round(numerator / denominator, 2)


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (platform's processor string elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_info() -> dict[str, Any]:
    """CPU model, cores (logical and usable by this process), load, Python and the date, for the record."""
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    info: dict[str, Any] = {"cpu": cpu_model(), "logical_cores": os.cpu_count(), "usable_cores": usable,
                            "python": platform.python_version(),
                            "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds")}
    if hasattr(os, "getloadavg"):
        info["load_avg_1m"] = round(os.getloadavg()[0], 2)
    return info


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub markdown table; None cells print as an em dash."""

    def cell(value: Any) -> str:
        if value is None:
            return "—"
        if isinstance(value, float):
            return f"{value:g}"
        return str(value)

    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def results_table(headers: Sequence[str], results: Sequence[dict[str, Any]],
                  cells: Callable[[dict[str, Any]], list[Any]]) -> str:
    """One row per system: `cells(result)` after the name, or its error across the row when it failed."""
    rows = [[r["system"], r["error"]] + [None] * (len(headers) - 2) if "error" in r else [r["system"], *cells(r)]
            for r in results]
    return markdown_table(headers, rows)


def percent(value: float | None) -> str | None:
    """A share as a whole percentage string, None kept."""
    return None if value is None else f"{value:.0%}"


def write_json(path: str | Path, data: dict[str, Any]) -> None:
    """Write the full result set as indented JSON."""
    Path(path).write_text(json.dumps(data, indent=2) + "\n")


PHASES = ("generate", "logprobs", "update", "reward")


def groupwise_columns(run_dir: Path, **extra: str) -> dict[str, list[Any]]:
    """Per-step timings and lengths (plus `extra` name=metric key) from a groupwise run's metrics.jsonl."""
    from groupwise.train.metrics import read_metrics

    metrics = read_metrics(run_dir)
    keys = {"step_s": "step_s", **{f"{p}_s": f"{p}_s" for p in PHASES}, "completion_len": "completion_len/mean",
            **extra}
    return {name: [m.get(key) for m in metrics] for name, key in keys.items()}


def phase_shares(record: dict[str, Any]) -> dict[str, float | None]:
    """Share of the steady steps' time in each phase of a groupwise step."""
    return {phase: rounded(share(record[f"{phase}_s"], record["step_s"]), 3) for phase in PHASES}


def phase_cells(result: dict[str, Any]) -> list[str | None]:
    """The phase-share columns of a result table row (empty for a system that does not report them)."""
    phases = result.get("share", {})
    return [percent(phases.get(phase)) for phase in PHASES]


def failed(child: ChildResult, name: str) -> dict[str, Any] | None:
    """The result line of a system whose child process failed, or None when it succeeded."""
    if child.returncode != 0 or child.record is None:
        return {"system": name, "error": f"child exited with code {child.returncode}",
                "wall_s": round(child.wall_s, 1)}
    return None
