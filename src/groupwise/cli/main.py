"""The `groupwise` command line: train, eval (and the commands registered by other modules)."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from groupwise.cli.errors import one_line_errors
from groupwise.config.load import build_config
from groupwise.errors import GroupwiseError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="GRPO post-training with verifiable rewards.")
console = Console(stderr=True)

SET_HELP = "Override one config value: section.key=value (repeatable), e.g. --set train.steps=10."


def prepare_run_dir(run_dir: Path | None, overwrite: bool) -> Path:
    """A fresh run folder: never reuse one silently."""
    run_dir = run_dir or Path("runs") / time.strftime("run-%Y%m%d-%H%M%S")
    if run_dir.exists() and any(run_dir.iterdir()):
        if not overwrite:
            raise GroupwiseError(f"run folder '{run_dir}' already exists",
                                 "pass --resume to continue it, --overwrite to replace it, or another --run-dir")
        shutil.rmtree(run_dir)
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / ".write-test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as err:
        raise GroupwiseError(f"cannot write to run folder '{run_dir}': {err.strerror}",
                             "choose a writable --run-dir with free space") from err
    return run_dir


@app.command()
@one_line_errors
def train(
    config: Path | None = typer.Argument(None, help="YAML config; omitted: the embedded default job."),
    set_: list[str] = typer.Option([], "--set", help=SET_HELP),
    run_dir: Path | None = typer.Option(None, "--run-dir", help="Output folder (default runs/run-DATE-TIME)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing run folder."),
) -> None:
    """Train with GRPO (or a variant) and write a run folder."""
    cfg = build_config(config, set_)
    folder = prepare_run_dir(run_dir, overwrite)
    from groupwise.train.loop import train as run_training

    summary = run_training(cfg, folder, console=console)
    print_summary(summary)


def print_summary(summary: dict) -> None:
    if "base" in summary:
        table = Table(title=f"held-out evaluation ({summary['base']['problems']} problems)")
        table.add_column("model")
        table.add_column("greedy accuracy", justify="right")
        for label in ("base", "trained"):
            table.add_row(label, f"{100 * summary[label]['greedy_accuracy']:.1f}%")
        Console().print(table)
        Console().print(f"gain: {summary['gain_points']:+.1f} points; training took "
                        f"{summary['train_minutes']:.1f} min; run folder: {summary['run_dir']}")
    else:
        Console().print(f"training took {summary['train_minutes']:.1f} min; run folder: {summary['run_dir']}")


@app.command("eval")
@one_line_errors
def eval_(
    model: str = typer.Argument(..., help="A run folder, or a model name/path (smollm2-135m, a folder, a .gguf)."),
    config: Path | None = typer.Option(None, "--config", help="YAML config for data and rewards."),
    set_: list[str] = typer.Option([], "--set", help=SET_HELP),
    problems: int | None = typer.Option(None, "--problems", help="Held-out problems (default eval.num_problems)."),
    out: Path | None = typer.Option(None, "--out", help="Write the result as JSON here."),
) -> None:
    """Greedy accuracy and sampled mean reward on the held-out split."""
    from groupwise.evaluate.run import evaluate_model

    result = evaluate_model(model, config, list(set_), problems, console=console)
    table = Table(title=f"held-out evaluation of {model}")
    for key in ("problems", "greedy_accuracy", "sampled_mean_reward"):
        table.add_column(key, justify="right")
    table.add_row(str(result["problems"]), f"{100 * result['greedy_accuracy']:.1f}%",
                  f"{result.get('sampled_mean_reward', float('nan')):.3f}")
    Console().print(table)
    if out:
        out.write_text(json.dumps(result, indent=2))


def main() -> None:
    app()


if __name__ == "__main__":
    main()
