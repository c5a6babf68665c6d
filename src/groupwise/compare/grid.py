"""`groupwise compare EXPERIMENT.yaml --out DIR`: the base model's row, the select slices, every variant x seed
cell (one after another, or K at a time in their own processes), then results.json and report.html."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console

from groupwise.compare.cells import Cell, finished, run_cell, run_cell_quietly, write_json_atomic
from groupwise.compare.spec import (
    Experiment,
    Variant,
    auto_precision,
    base_config,
    cell_config,
    load_experiment,
    spec_hash,
)
from groupwise.config.load import dump_config
from groupwise.config.paths import check_local_paths
from groupwise.config.schema import Config
from groupwise.data.source import load_rows
from groupwise.errors import GroupwiseError
from groupwise.evaluate.heldout_eval import unique_rows
from groupwise.rewards.compute import with_named_rewards
from groupwise.runtime.cores import available_cores
from groupwise.runtime.progress import output_console

Row = dict[str, Any]
HELDOUT = "heldout.jsonl"


class CompareInterrupted(Exception):
    """Some cells stopped on a signal after saving a checkpoint; rerunning the command resumes them."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def run_compare(experiment_path: Path, out: Path, *, parallel: int = 1, console: Console | None = None,
                worker_setup: Callable[..., Any] | None = None, worker_args: tuple = ()) -> dict[str, Any]:
    """Run what is missing of the grid, then write results.json, report.html and results.md; returns their
    paths and how many cells ran now. `worker_setup(*worker_args)` prepares each `--parallel` worker process."""
    import torch

    from groupwise.compare.grid_report import build_compare_report, few_problems_warning, table_markdown
    from groupwise.compare.results import build_results

    if parallel < 1:
        raise GroupwiseError(f"--parallel {parallel} must be at least 1", "pass --parallel 1 or more")
    console = console or output_console(stderr=True)
    experiment = load_experiment(experiment_path)
    base = base_config(experiment)
    for cfg in [base] + [cell_config(experiment, v, experiment.seeds[0], threads=1) for v in experiment.variants]:
        check_local_paths(cfg)  # before DIR is made: a wrong path leaves nothing behind
    heldout = unique_rows(load_rows(base.data, "heldout"))[:experiment.eval.problems]
    out.mkdir(parents=True, exist_ok=True)
    if not (out / "experiment.yaml").exists() or not (out / "experiment.yaml").samefile(experiment_path):
        shutil.copyfile(experiment_path, out / "experiment.yaml")  # the record of what ran (rerun from it works)
    threads = base.train.threads or available_cores()
    torch.set_num_threads(threads)
    shared_heldout(heldout, experiment.eval.problems, out / HELDOUT, console)
    base_cell = make_base_cell(experiment, base, out, threads)
    _announce(console, base_cell, "evaluating the base model")
    base_result = run_cell(base_cell, heldout, console)
    console.print(base_line(base_result))
    per_cell = max(1, threads // parallel)
    cells = {v.name: [make_cell(experiment, v, seed, base, out, per_cell, parallel, console) for seed in
                      experiment.seeds] for v in experiment.variants}
    # seed by seed, every variant of a seed before the next: a grid stopped early still holds paired cells
    todo = [group[i] for i in range(len(experiment.seeds)) for group in cells.values() if finished(group[i]) is None]
    console.print(f"compare: {sum(map(len, cells.values())) - len(todo)} cells finished, {len(todo)} to run"
                  f"{f', {parallel} at a time with {per_cell} threads each' if parallel > 1 and todo else ''}")
    if parallel == 1:
        for cell in todo:
            _announce(console, cell, "training and evaluating")
            run_cell(cell, heldout, console)
    else:
        run_in_processes(todo, heldout, parallel, console, worker_setup, worker_args)
    results = build_results(base_result, {name: [finished(c) for c in group] for name, group in cells.items()},
                            baseline=experiment.baseline, ks=list(experiment.eval.ks),
                            samples=experiment.eval.samples, replicates=experiment.eval.bootstrap,
                            seeds=experiment.seeds)
    write_json_atomic(out / "results.json", results)
    if warning := few_problems_warning(results["problems"]):
        console.print(warning, markup=False, highlight=False)
    table = out / "results.md"
    table.write_text(table_markdown(results))
    page = build_compare_report(out, results, {n: [finished(c) for c in g] for n, g in cells.items()},
                                title=Path(experiment_path).stem)
    return {"results": out / "results.json", "report": page, "table": table, "ran": len(todo), "summary": results}


def _announce(console: Console, cell: Cell, what: str) -> None:
    if finished(cell) is None:
        console.print(f"{what}: {cell.folder}")


def base_line(base: dict[str, Any]) -> str:
    """The base model's greedy accuracy and pass@1, printed before any training: is the task in range?"""
    greedy = sum(base["greedy_correct"]) / max(len(base["greedy_correct"]), 1)
    sampled = sum(base["n"])
    pass1 = f", pass@1 {100 * sum(base['correct']) / sampled:.1f}%" if sampled else ""
    return f"base model on {len(base['problems'])} held-out problems: greedy accuracy {100 * greedy:.1f}%{pass1}"


def shared_heldout(rows: list[Row], problems: int, path: Path, console: Console) -> list[Row]:
    """The held-out problems every cell is evaluated on (the base config's held-out split), written to `path`."""
    if len(rows) < problems:
        console.print(f"note: the base config's held-out split has {len(rows)} distinct problems, fewer than "
                      f"eval.problems={problems} (raise data.heldout_size)")
    path.write_text("".join(json.dumps(row, default=str) + "\n" for row in rows))
    return rows


def scoring_of(cfg: Config, base: Config) -> dict[str, Any]:
    """`cfg` with the base config's scoring and sampling: every cell is evaluated by the same rules."""
    data = cfg.model_dump(mode="json")
    data["rewards"] = with_named_rewards(base).rewards.model_dump(mode="json")
    data["algorithm"]["success_threshold"] = base.algorithm.success_threshold
    for key in ("max_new_tokens", "temperature", "top_p"):
        data["rollout"][key] = getattr(base.rollout, key)
    data["eval"]["batch_size"] = base.eval.batch_size
    return Config.model_validate(data).model_dump(mode="json")


def make_base_cell(experiment: Experiment, base: Config, out: Path, threads: int) -> Cell:
    cfg = base.override([f"train.threads={threads}"])
    precision = auto_precision(cfg)
    return Cell("base", None, out / "base", cfg.model_dump(mode="json"), scoring_of(cfg, base),
                spec_hash(experiment, None, None, precision), experiment.eval.samples, precision)


def make_cell(experiment: Experiment, variant: Variant, seed: int, base: Config, out: Path, threads: int,
              parallel: int, console: Console) -> Cell:
    folder = out / variant.name / f"seed-{seed}"
    precision = auto_precision(cell_config(experiment, variant, seed, threads=threads))
    spec = spec_hash(experiment, variant, seed, precision)
    extra: dict[str, Any] = {"log": {"progress": False}} if parallel > 1 else {}
    if variant.select is not None:
        probe = Cell(variant.name, seed, folder, {}, {}, spec, experiment.eval.samples, precision)
        selected = out / "select" / f"{variant.name}.jsonl"
        if finished(probe) is None:
            select_slice(base, variant.select, selected, console)
        extra |= {"data": {"path": str(selected.resolve()), "task": None, "task_params": {}, "train_size": None,
                           "heldout_path": str((out / HELDOUT).resolve()), "heldout_fraction": 0.0},
                  "rewards": with_named_rewards(base).rewards.model_dump(mode="json")}
    cfg = cell_config(experiment, variant, seed, threads=threads, extra=extra)
    return Cell(variant.name, seed, folder, cfg.model_dump(mode="json"), scoring_of(cfg, base), spec,
                experiment.eval.samples, precision)


def select_slice(base: Config, select: dict[str, Any], out: Path, console: Console) -> None:
    """`groupwise select` on the base config's training data, pass rates cached beside the slices."""
    from groupwise.evaluate.jobs import run_select

    if out.is_file():
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    config = out.parent / "base-config.yaml"
    config.write_text(dump_config(with_named_rewards(base)))
    console.print(f"selecting {select['keep']} of the training data by base pass rate -> {out}")
    run_select(None, select["keep"], out, samples=select["samples"], config=config,
               difficulty=out.parent / f"pool-{select['samples']}.difficulty.jsonl", seed=select["seed"],
               console=console)


def run_in_processes(cells: list[Cell], heldout: list[Row], parallel: int, console: Console,
                     setup: Callable[..., Any] | None, setup_args: tuple) -> None:
    """K cells at a time, each in a fresh process (torch threads are per process). A Ctrl-C reaches every worker
    (same process group) and SIGTERM to this process is handed on: each worker saves a checkpoint and stops,
    no further cell starts. Then the first error, or the stop, is raised."""
    import multiprocessing
    import signal
    from multiprocessing.connection import wait

    context = multiprocessing.get_context("spawn")
    pending, running, stops, errors, received = list(cells), {}, [], [], []

    def stop(signum: int, frame: object) -> None:
        received.append(signum)
        if signum == signal.SIGTERM:
            for process in running:
                os.kill(process.pid, signal.SIGTERM)

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        while running or (pending and not received):
            while pending and not received and len(running) < parallel:
                cell = pending.pop(0)
                receive, send = context.Pipe(duplex=False)
                process = context.Process(target=_worker, args=(cell, heldout, send, setup, setup_args))
                process.start()
                send.close()
                running[process] = (cell, receive)
            wait([p.sentinel for p in running], timeout=1.0)
            for process in [p for p in running if not p.is_alive()]:
                cell, receive = running.pop(process)
                result = receive.recv() if receive.poll() else None
                process.join()
                if result is None:
                    errors.append(GroupwiseError(f"the worker of {cell.folder} ended with exit code "
                                                 f"{process.exitcode} (its traceback is above)",
                                                 "fix the cause and rerun: finished cells are kept"))
                elif "interrupted" in result:
                    stops.append(result)
                elif "error" in result:
                    errors.append(GroupwiseError(f"{cell.folder}: {result['error'][0]}", result["error"][1]))
                else:
                    console.print(f"finished: {cell.folder}")
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if errors and not received:
        raise errors[0]
    if stops or received:
        code = stops[0]["exit_code"] if stops else 128 + received[0]
        raise CompareInterrupted(f"{len(stops)} cells stopped after saving a checkpoint, {len(pending)} were not "
                                 "started", code)


def _worker(cell: Cell, heldout: list[Row], send, setup: Callable[..., Any] | None, setup_args: tuple) -> None:
    """One `--parallel` process: prepare (quiet libraries), run the cell, send back how it ended."""
    if setup is not None:
        setup(*setup_args)
    send.send(run_cell_quietly(cell, heldout))
    send.close()
