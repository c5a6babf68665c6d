"""One cell of `groupwise compare`: train (or resume) an ordinary run folder, evaluate it on the shared
held-out problems, and write cell.json, the only file a finished cell needs to be reused elsewhere."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from groupwise.config.load import dump_config
from groupwise.config.schema import Config
from groupwise.data.prompts import prompt_key
from groupwise.errors import GroupwiseError
from groupwise.evaluate.heldout_eval import check_meta, evaluate_passk, read_results, results_meta

Row = dict[str, Any]
CELL, SPEC = "cell.json", "compare-spec.json"
CURVE_KEYS = ("reward/mean", "success_rate", "rollout_tokens")


@dataclass(frozen=True)
class Cell:
    """What one worker needs: picklable, so `--parallel` can hand it to another process."""

    variant: str  # "base" for the base model's row
    seed: int | None
    folder: Path
    config: dict[str, Any]  # the cell's resolved config (Config.model_dump)
    eval_config: dict[str, Any]  # the same, with the base config's scoring and sampling for evaluation
    spec: str  # spec.spec_hash of the cell
    samples: int
    precision: str | None = None  # spec.auto_precision: what `auto` dtypes became on this machine


def finished(cell: Cell) -> dict[str, Any] | None:
    """The cell's results if its cell.json exists and was made from the same spec; else None."""
    path = cell.folder / CELL
    if not path.is_file():
        return None
    result = json.loads(path.read_text())
    if result.get("spec") != cell.spec:
        raise _another_spec(path, result, cell, "made", "restore the experiment file, or use another --out folder")
    return result


def check_started_spec(cell: Cell) -> None:
    """An unfinished cell resumes only with the spec it was started with."""
    path = cell.folder / SPEC
    if path.is_file() and (started := json.loads(path.read_text())).get("spec") != cell.spec:
        raise _another_spec(cell.folder, started, cell, "started",
                            "restore the experiment file, or delete that folder to start it again")
    cell.folder.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"spec": cell.spec, "variant": cell.variant, "seed": cell.seed,
                                "precision": cell.precision}))


def _another_spec(path: Path, recorded: dict[str, Any], cell: Cell, verb: str, fix: str) -> GroupwiseError:
    if recorded.get("precision", cell.precision) != cell.precision:
        return GroupwiseError(f"'{path}' was {verb} in {recorded['precision']}, but `auto` precision is "
                              f"{cell.precision} on this machine: one grid would mix the two",
                              "continue the grid on a machine like the one it started on, or pin model.dtype, "
                              "rollout.dtype and train.bf16 in the experiment's base and use another --out")
    return GroupwiseError(f"'{path}' was {verb} from another experiment (base, variant, seed or eval changed)", fix)


def run_cell(cell: Cell, heldout: list[Row], console=None) -> dict[str, Any]:
    """Train the cell unless its summary.json says it finished (resuming from a checkpoint when it has one),
    evaluate it, write cell.json; a cell with a cell.json is returned as it is."""
    import torch

    if (done := finished(cell)) is not None:
        return done
    check_started_spec(cell)
    cfg = Config.model_validate(cell.config)
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    if cell.variant == "base":
        from groupwise.models.load import load_configured_model

        (cell.folder / "config.yaml").write_text(dump_config(cfg))
        model, tokenizer = load_configured_model(cfg)
        train_summary: dict[str, Any] = {"train_minutes": 0.0, "rollout_tokens": 0}
    else:
        from groupwise.models.trained import load_trained

        train_summary = train_cell(cfg, cell.folder, console)
        model, tokenizer, _ = load_trained(cell.folder)
    summary, records = evaluate_cell(model.eval(), tokenizer, heldout, Config.model_validate(cell.eval_config),
                                     cell.folder / "eval", cell.samples, label=cell_label(cell))
    result = cell_result(cell, records, summary, train_summary, _curve(cell.folder))
    write_json_atomic(cell.folder / CELL, result)
    return result


def train_cell(cfg: Config, folder: Path, console=None) -> dict[str, Any]:
    """Train to the end (resume when the folder holds a started run); a finished run is not trained again.
    A fresh start that fails before training anything leaves an empty folder, as `groupwise train` does."""
    from groupwise.train import loop
    from groupwise.train.checkpoint import TrainingInterrupted, discard_untrained

    summary_path = folder / "summary.json"
    if not summary_path.is_file():
        started = (folder / "config.yaml").is_file()
        try:
            loop.training_loop(cfg, folder, console=console, resume=started)
        except TrainingInterrupted:
            raise
        except BaseException:
            if not started:
                discard_untrained(folder, created=False)
            raise
    return json.loads(summary_path.read_text())


def cell_label(cell: Cell) -> str:
    return cell.variant if cell.seed is None else f"{cell.variant}/seed-{cell.seed}"


def evaluate_cell(model, tokenizer, rows: list[Row], cfg: Config, out: Path, samples: int, *, label: str
                  ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Greedy and `samples` sampled completions per problem (resumable in out/results.jsonl)."""
    from groupwise.data.prompts import render_prompts
    from groupwise.rewards.compute import configured_rewards

    check_meta(out, results_meta(label, samples, cfg))
    summary = evaluate_passk(model, tokenizer, rows, render_prompts(rows, tokenizer, cfg.data),
                             configured_rewards(cfg), cfg, samples=samples, ks=[1], out_dir=out)
    done = read_results(out / "results.jsonl")
    return summary, [done[prompt_key(row)] for row in rows]


def cell_result(cell: Cell, records: list[dict[str, Any]], summary: dict[str, Any],
                train_summary: dict[str, Any], curve: dict[str, list]) -> dict[str, Any]:
    """cell.json: per-problem outcomes (greedy, n and correct for pass@k, mean reward), training cost, curve."""
    return {"variant": cell.variant, "seed": cell.seed, "spec": cell.spec, "precision": cell.precision,
            "problems": [r["key"] for r in records],
            "greedy_correct": [int(bool(r["greedy_correct"])) for r in records],
            "n": [r.get("n", 0) for r in records], "correct": [r.get("correct", 0) for r in records],
            "mean_reward": [r.get("mean_reward") for r in records],
            "greedy_accuracy": summary["greedy_accuracy"],
            "train_minutes": float(train_summary.get("train_minutes", 0.0)),
            "rollout_tokens": int(train_summary.get("rollout_tokens", 0)),
            "curve": curve}


def _curve(folder: Path) -> dict[str, list]:
    """The per-step training curve from metrics.jsonl: step and CURVE_KEYS (None where missing)."""
    from groupwise.train.metrics import read_metrics

    metrics = read_metrics(folder)
    return {"step": [m["step"] for m in metrics]} | {k: [m.get(k) for m in metrics] for k in CURVE_KEYS}


def write_json_atomic(path: Path, data: Any) -> None:
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(json.dumps(data, indent=1))
    os.replace(partial, path)


def run_cell_quietly(cell: Cell, heldout: list[Row]) -> dict[str, Any]:
    """A `--parallel` worker: run the cell; an interruption comes back as data (it saved a checkpoint)."""
    from groupwise.train.checkpoint import TrainingInterrupted

    try:
        return run_cell(cell, heldout)
    except TrainingInterrupted as stop:
        return {"interrupted": str(stop), "exit_code": stop.exit_code}
    except KeyboardInterrupt:  # Ctrl-C during the evaluation: its finished chunks are kept in eval/
        return {"interrupted": f"{cell.folder}: evaluation interrupted", "exit_code": 130}
    except GroupwiseError as err:
        return {"error": [err.problem, err.fix]}
