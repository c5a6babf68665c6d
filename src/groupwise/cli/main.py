"""The `groupwise` command line: train, eval (and the commands registered by other modules)."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from groupwise.cli.commands import register_commands
from groupwise.cli.errors import one_line_errors
from groupwise.cli.quiet import VERBOSE_HELP, quiet_third_party
from groupwise.cli.serve import register_serve_command
from groupwise.config.load import build_config
from groupwise.config.schema import Config
from groupwise.errors import GroupwiseError
from groupwise.runtime.progress import output_console
from groupwise.train.run_dir import prepare_run_dir

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="GRPO post-training with verifiable rewards.")
console = output_console(stderr=True)

SET_HELP = "Override one config value: section.key=value (repeatable), e.g. --set train.steps=10."
ConfigArg = Annotated[Path | None, typer.Argument(help="YAML config; omitted: the embedded default job.")]
SetOption = Annotated[list[str] | None, typer.Option("--set", help=SET_HELP)]
VerboseOption = Annotated[bool, typer.Option("--verbose", help=VERBOSE_HELP)]


@dataclass
class Job:
    """What `groupwise train` runs: the config, the run folder (None: a new one, named by rank 0), and whether it
    continues that folder."""

    cfg: Config
    folder: Path | None
    resume: bool


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
    resume_if_exists: Annotated[bool, typer.Option(
        "--resume-if-exists", help="Continue --run-dir from its newest intact checkpoint when it holds this "
        "job already, else start it: the same command can be resubmitted (SLURM, docs/distributed.md).")] = False,
    verbose: VerboseOption = False,
    nproc: Annotated[int | None, typer.Option("--nproc", min=1, help="Start N processes on this machine with "
                                              "torchrun (docs/distributed.md).")] = None,
) -> None:
    """Train with GRPO (or a variant) and write a run folder."""
    from groupwise.runtime.distributed import launched_by_torchrun, run_on_main
    from groupwise.train.run_dir import check_run_dir

    start_command(verbose, nproc)  # under torchrun: one of several processes; rank 0 prepares the run folder
    set_ = set_ or []
    if resume is None and run_dir is not None and restarted_by_torchrun() and (run_dir / "config.yaml").is_file():
        # torchrun --max-restarts reran this command after a worker died: continue from the newest checkpoint
        return print_summary(run_and_report(resume_config_of(run_dir), run_dir, resume=True))
    if resume is not None and (config or run_dir or overwrite or preflight or resume_if_exists):
        raise GroupwiseError("--resume continues a run with the config saved in its folder",
                             "drop the config file, --run-dir, --overwrite, --preflight and --resume-if-exists")
    job = plan_training(config, set_, run_dir, resume, resume_if_exists)
    rewards = None  # under torchrun each rank builds its own, in the loop
    if not launched_by_torchrun():  # one process, or the parent of --nproc: before any folder or worker exists
        from groupwise.train.startup import check_before_start

        rewards = check_before_start(job.cfg, nproc)
        if not job.resume and job.folder is not None and not preflight:
            check_run_dir(job.folder, overwrite)
    if preflight:
        from groupwise.train.preflight import preflight as run_preflight
        from groupwise.train.preflight import print_preflight

        print_notes(job.cfg)
        return print_preflight(run_preflight(job.cfg), output_console())
    if nproc is not None:
        raise typer.Exit(launch_training(nproc, job, verbose))
    print_notes(job.cfg)
    if job.resume:
        return print_summary(run_and_report(job.cfg, job.folder, resume=True, rewards=rewards))
    created = not (job.folder and job.folder.exists())
    folder = run_on_main(lambda: prepare_run_dir(job.folder, overwrite))
    print_summary(run_and_report(job.cfg, folder, resume=False, created=created, rewards=rewards))


def plan_training(config: Path | None, sets: list[str], run_dir: Path | None, resume: Path | None,
                  resume_if_exists: bool) -> Job:
    """`--resume RUN`: the run's own config; `--resume-if-exists`: the run in --run-dir if it is this job's;
    else a new run of the config file and --set."""
    from groupwise.train.checkpoint import resume_config, resume_same_job

    if resume is not None:
        return Job(resume_config(resume, sets), resume, True)
    cfg = build_config(config, sets)
    if resume_if_exists:
        if run_dir is None:
            raise GroupwiseError("--resume-if-exists needs --run-dir",
                                 "give the fixed run folder that each submission of the job continues")
        if (run_dir / "config.yaml").is_file():
            return Job(resume_same_job(run_dir, cfg, sets), run_dir, True)
    return Job(cfg, run_dir, False)


def launch_training(nproc: int, job: Job, verbose: bool) -> int:
    """`train --nproc N` after the checks passed: N workers on a run folder chosen here; a fresh run that fails
    before its first step leaves no folder behind."""
    from groupwise.cli.launch import run_workers, worker_arguments
    from groupwise.train.checkpoint import discard_untrained
    from groupwise.train.run_dir import default_run_dir

    folder = job.folder or default_run_dir()
    created = not folder.exists()
    extra = ["--run-dir", str(folder)] if job.folder is None else []
    code = run_workers(nproc, worker_arguments(sys.argv[1:], extra), verbose)
    if code and not job.resume:
        discard_untrained(folder, created)
    return code


def start_command(verbose: bool, nproc: int | None) -> None:
    """Quiet other libraries (unless --verbose); when torchrun started this process (not `--nproc`, whose
    parent starts the workers), join its process group."""
    from groupwise.runtime.distributed import init_distributed

    quiet_third_party(verbose)
    if nproc is None:
        init_distributed()


def print_caveat(problems: int) -> None:
    """Warn when too few held-out problems back a reported accuracy or gain."""
    from groupwise.evaluate.heldout_eval import few_problems_warning

    if warning := few_problems_warning(problems):
        console.print(warning, markup=False, highlight=False, soft_wrap=True)


def print_notes(cfg) -> None:
    """What the config's validation adjusted of the user's values (e.g. the micro-batch size): once, on rank 0."""
    from groupwise.runtime.distributed import is_main

    for note in cfg.notes if is_main() else []:
        console.print(f"note: {note}", markup=False, highlight=False, soft_wrap=True)


def run_and_report(cfg, folder: Path, *, resume: bool, created: bool = False, rewards: list | None = None) -> dict:
    """Train (`rewards`: the reward functions the checks built; None: the config's); SIGINT/SIGTERM exit 130/143
    with the resume command; a failed fresh start leaves no half run."""
    from groupwise.api import run_training  # the code path groupwise.train() runs too
    from groupwise.runtime.distributed import barrier, is_main
    from groupwise.train.checkpoint import TrainingInterrupted
    from groupwise.train.inputs import TrainInputs

    try:
        return run_training(cfg, folder, resume=resume, created=created, console=console,
                            inputs=TrainInputs(rewards=rewards))
    except TrainingInterrupted as stop:
        if is_main():
            print(stop, file=sys.stderr)
        barrier()  # the ranks end together, after rank 0's line: torchrun stops the others when one ends
        raise typer.Exit(stop.exit_code) from None


def restarted_by_torchrun() -> bool:
    """torchrun counts the times it restarted the worker group (TORCHELASTIC_RESTART_COUNT)."""
    import os

    return int(os.environ.get("TORCHELASTIC_RESTART_COUNT") or 0) > 0


def resume_config_of(folder: Path):
    from groupwise.train.checkpoint import resume_config

    return resume_config(folder, [])


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
        output_console().print(table)
        output_console().print(f"gain: {summary['gain_points']:+.1f} points; training took "
                        f"{summary['train_minutes']:.1f} min; run folder: {summary['run_dir']}")
        print_caveat(summary["base"]["problems"])
    else:
        output_console().print(f"training took {summary['train_minutes']:.1f} min; run folder: {summary['run_dir']}")


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

    output_console().print(f"exported {run} to {export_run(run, out, merge=merge, checkpoint=checkpoint)}")


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
    from groupwise.evaluate.jobs import eval_overrides, run_eval
    from groupwise.runtime.distributed import is_main

    if nproc is not None:  # the config, paths and --k checked here, before any worker starts
        from groupwise.cli.launch import run_workers, worker_arguments

        parse_ks(k)
        eval_overrides(model, config, list(set_ or []), data)
        raise typer.Exit(run_workers(nproc, worker_arguments(sys.argv[1:], []), verbose))

    result = run_eval(model, config, list(set_ or []), problems=problems, data=data, samples=samples,
                      ks=parse_ks(k), baseline=baseline, out=out, console=console)
    if is_main():
        output_console().print(results_table(model, result["summary"], baseline, result.get("baseline_summary")))
        print_caveat(result["summary"]["problems"])


register_commands(app, console)
register_serve_command(app, console)


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
    """The `groupwise` command: the Typer app, ended through exit_process (a clean exit under torchrun)."""
    from groupwise.runtime.distributed import exit_process

    try:
        app()
        code = 0
    except SystemExit as done:  # how the app ends: click's exit code, or a message to print
        if isinstance(done.code, str):
            print(done.code, file=sys.stderr)
        code = done.code if isinstance(done.code, int) else int(done.code is not None)
    exit_process(code)


if __name__ == "__main__":
    main()
