"""The `groupwise` command line: train, eval (and the commands registered by other modules)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from rich.console import Console
from rich.table import Table

from groupwise.cli.commands import register_commands
from groupwise.cli.errors import one_line_errors
from groupwise.cli.quiet import VERBOSE_HELP, quiet_third_party
from groupwise.config.load import build_config
from groupwise.errors import GroupwiseError
from groupwise.train.run_dir import prepare_run_dir

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="GRPO post-training with verifiable rewards.")
console = Console(stderr=True)

SET_HELP = "Override one config value: section.key=value (repeatable), e.g. --set train.steps=10."
ConfigArg = Annotated[Path | None, typer.Argument(help="YAML config; omitted: the embedded default job.")]
SetOption = Annotated[list[str] | None, typer.Option("--set", help=SET_HELP)]
VerboseOption = Annotated[bool, typer.Option("--verbose", help=VERBOSE_HELP)]


@app.command("train")
@one_line_errors
def train_command(
    config: ConfigArg = None,
    set_: SetOption = None,
    run_dir: Annotated[Path | None, typer.Option("--run-dir", help="Output folder (default runs/run-DATE-TIME).")
                       ] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing run folder.")] = False,
    preflight: Annotated[bool, typer.Option("--preflight", help="Sample a few groups with the base model, "
                                            "print the expected learnable fraction and exit.")] = False,
    resume: Annotated[Path | None, typer.Option("--resume", help="Continue this run folder from its newest "
                                                "intact checkpoint with its config.yaml (--set only for "
                                                "train.steps/save_every/keep_checkpoints/max_nonfinite/"
                                                "threads, model.device, log.progress/tensorboard).")] = None,
    verbose: VerboseOption = False,
    nproc: Annotated[int | None, typer.Option("--nproc", min=1, help="Start N processes on this machine with "
                                              "torchrun (docs/distributed.md).")] = None,
) -> None:
    """Train with GRPO (or a variant) and write a run folder."""
    from groupwise.runtime.distributed import run_on_main

    start_command(verbose, nproc)  # under torchrun: one of several processes; rank 0 prepares the run folder
    set_ = set_ or []
    if resume is None and run_dir is not None and restarted_by_torchrun() and (run_dir / "config.yaml").is_file():
        # torchrun --max-restarts reran this command after a worker died: continue from the newest checkpoint
        return print_summary(run_and_report(resume_config_of(run_dir), run_dir, resume=True))
    if resume is not None:
        return resume_training(resume, set_, extra=config or run_dir or overwrite or preflight)
    cfg = build_config(config, set_)
    print_notes(cfg)
    if preflight:
        from groupwise.train.preflight import preflight as run_preflight
        from groupwise.train.preflight import print_preflight

        return print_preflight(run_preflight(cfg))
    created = not (run_dir and run_dir.exists())
    folder = run_on_main(lambda: prepare_run_dir(run_dir, overwrite))
    print_summary(run_and_report(cfg, folder, resume=False, created=created))


def start_command(verbose: bool, nproc: int | None) -> None:
    """Quiet other libraries (unless --verbose); with --nproc N rerun the command under torchrun and exit with
    its code; else, when torchrun started this process, join its process group."""
    from groupwise.runtime.distributed import init_distributed

    quiet_third_party(verbose)
    if nproc is not None:
        launch_torchrun(nproc)
    init_distributed()


def print_caveat(problems: int) -> None:
    """Warn when too few held-out problems back a reported accuracy or gain."""
    from groupwise.evaluate.heldout_eval import few_problems_warning

    if warning := few_problems_warning(problems):
        console.print(warning, markup=False, highlight=False, soft_wrap=True)


def print_notes(cfg) -> None:
    """What the config's validation adjusted (e.g. the micro-batch size), once, on stderr."""
    for note in cfg.notes:
        console.print(f"note: {note}", markup=False, highlight=False, soft_wrap=True)


def resume_training(folder: Path, overrides: list[str], extra: object) -> None:
    """`train --resume RUN_DIR`: the run's own config, a few safe --set keys, the newest intact checkpoint."""
    from groupwise.train.checkpoint import resume_config

    if extra:
        raise GroupwiseError("--resume continues a run with the config saved in its folder",
                             "drop the config file, --run-dir, --overwrite and --preflight")
    print_summary(run_and_report(resume_config(folder, overrides), folder, resume=True))


def run_and_report(cfg, folder: Path, *, resume: bool, created: bool = False) -> dict:
    """Train; SIGINT/SIGTERM exit 130/143 with the resume command; a failed fresh start leaves no half run."""
    from groupwise.api import run_training  # the code path groupwise.train() runs too
    from groupwise.train.checkpoint import TrainingInterrupted

    try:
        return run_training(cfg, folder, resume=resume, created=created, console=console)
    except TrainingInterrupted as stop:
        print(stop, file=sys.stderr)
        raise typer.Exit(stop.exit_code) from None


def restarted_by_torchrun() -> bool:
    """torchrun counts the times it restarted the worker group (TORCHELASTIC_RESTART_COUNT)."""
    import os

    return int(os.environ.get("TORCHELASTIC_RESTART_COUNT") or 0) > 0


def resume_config_of(folder: Path):
    from groupwise.train.checkpoint import resume_config

    return resume_config(folder, [])


def launch_torchrun(nproc: int) -> NoReturn:
    """`train/eval --nproc N`: the same command under torchrun with N processes on this machine; exits with its code,
    or 128 + signal when stopped by SIGTERM (handed on to torchrun, whose workers finish the step and save) or
    Ctrl-C (the terminal signals every process of the group itself)."""
    import os
    import signal
    import subprocess

    args, skip = [], False
    for arg in sys.argv[1:]:
        if skip or arg == "--nproc" or arg.startswith("--nproc="):
            skip = arg == "--nproc"
            continue
        args.append(arg)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
               "-m", "groupwise.cli.main", *args]
    child = subprocess.Popen(command, env=os.environ.copy())
    received: list[int] = []

    def forward(signum: int, frame: object) -> None:
        received.append(signum)
        if signum == signal.SIGTERM:
            child.send_signal(signum)

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, forward)
    code = child.wait()
    raise typer.Exit(128 + received[0] if received else code)


def print_summary(summary: dict) -> None:
    from groupwise.runtime.distributed import is_main

    if not is_main():
        return
    if "base" in summary:
        table = Table(title=f"held-out evaluation ({summary['base']['problems']} problems)")
        table.add_column("model")
        table.add_column("greedy accuracy", justify="right")
        for label in ("base", "trained"):
            table.add_row(label, f"{100 * summary[label]['greedy_accuracy']:.1f}%")
        Console().print(table)
        Console().print(f"gain: {summary['gain_points']:+.1f} points; training took "
                        f"{summary['train_minutes']:.1f} min; run folder: {summary['run_dir']}")
        print_caveat(summary["base"]["problems"])
    else:
        Console().print(f"training took {summary['train_minutes']:.1f} min; run folder: {summary['run_dir']}")


@app.command()
@one_line_errors
def export(
    run: Annotated[Path, typer.Argument(help="A finished run folder.")],
    out: Annotated[Path, typer.Option("--out", help="Folder to write (must not exist yet).")],
    merge: Annotated[bool, typer.Option("--merge", help="Merge a LoRA adapter into the weights.")] = False,
    checkpoint: Annotated[int | None, typer.Option(
        "--checkpoint", help="Export the run's checkpoint of this step (full fine-tuning; sharded checkpoints are "
        "gathered) instead of its final model.")] = None,
    verbose: VerboseOption = False,
) -> None:
    """Write a run's trained model as a Hugging Face folder with its tokenizer and chat template."""
    quiet_third_party(verbose)
    from groupwise.models.export import export_run

    Console().print(f"exported {run} to {export_run(run, out, merge=merge, checkpoint=checkpoint)}")


@app.command("eval")
@one_line_errors
def eval_(
    model: Annotated[str, typer.Argument(help="A run folder, or a model name/path (smollm2-135m, a .gguf).")],
    config: Annotated[Path | None, typer.Option("--config", help="YAML config for data and rewards.")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help=SET_HELP)] = None,
    data: Annotated[str | None, typer.Option(
        "--data", help="Built-in task name or data file to evaluate on (default: the config's held-out split).")
    ] = None,
    problems: Annotated[int | None, typer.Option("--problems", help="Problems (default eval.num_problems).")
                        ] = None,
    samples: Annotated[int | None, typer.Option(
        "--samples", min=0, help="Sampled completions per problem for pass@k and mean reward (default "
        "eval.samples; 0: greedy only).")] = None,
    k: Annotated[str, typer.Option("--k", help="pass@k values, comma-separated; those above --samples are "
                                   "skipped.")] = "1,8,64",
    baseline: Annotated[str | None, typer.Option(
        "--baseline", help="Another model or run folder, evaluated on the same problems, shown side by side.")
    ] = None,
    out: Annotated[Path | None, typer.Option(
        "--out", help="Folder for results.jsonl (per problem; a rerun resumes) and summary.json.")] = None,
    verbose: VerboseOption = False,
    nproc: Annotated[int | None, typer.Option("--nproc", min=1, help="Split the problems over N processes on "
                                              "this machine with torchrun (docs/distributed.md).")] = None,
) -> None:
    """Greedy accuracy, unbiased pass@k and mean reward per function on held-out problems."""
    start_command(verbose, nproc)  # under torchrun: each rank scores its share of the problems, rank 0 writes
    from groupwise.evaluate.heldout_eval import parse_ks, results_table
    from groupwise.evaluate.jobs import run_eval
    from groupwise.runtime.distributed import is_main

    result = run_eval(model, config, list(set_ or []), problems=problems, data=data, samples=samples,
                      ks=parse_ks(k), baseline=baseline, out=out, console=console)
    if is_main():
        Console().print(results_table(model, result["summary"], baseline, result.get("baseline_summary")))
        print_caveat(result["summary"]["problems"])


register_commands(app, console)


@app.command("config")
@one_line_errors
def config_(
    config: ConfigArg = None,
    set_: SetOption = None,
    reference: Annotated[bool, typer.Option("--reference", help="Print every key with its default and meaning.")
                         ] = False,
) -> None:
    """Print the resolved config (presets and --set applied), or the reference of every key."""
    set_ = set_ or []
    from groupwise.config.load import dump_config
    from groupwise.config.reference import reference_markdown
    from groupwise.rewards.compute import with_named_rewards

    if reference:
        return print(reference_markdown())
    cfg = build_config(config, set_)
    print_notes(cfg)
    print(dump_config(with_named_rewards(cfg)), end="\n")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
