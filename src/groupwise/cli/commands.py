"""The `select`, `report`, `compare` and `data check` commands, registered on the main typer app (imports stay
lazy: fast --help)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from groupwise.cli.errors import one_line_errors
from groupwise.cli.quiet import VERBOSE_HELP, quiet_third_party
from groupwise.runtime.progress import output_console

SET_HELP = "Override one config value: section.key=value (repeatable)."


def register_commands(app: typer.Typer, console: Console) -> None:
    """Add `groupwise select`, `groupwise report`, `groupwise compare` and `groupwise data check` to `app`."""
    register_data_commands(app, console)

    @app.command("select")
    @one_line_errors
    def select(
        out: Annotated[Path, typer.Option("--out", help="Selected rows as JSONL, with a pass_rate column.")],
        data: Annotated[str | None, typer.Option("--data", help="Built-in task name or data file "
                                                 "(default: the config's training data).")] = None,
        samples: Annotated[int, typer.Option("--samples", min=1, help="Samples per example (K) at "
                                             "temperature 1.")] = 8,
        keep: Annotated[str, typer.Option("--keep", help="hardest:0.1 | easiest:0.1 | middle:0.1 | "
                                          "random:0.1 | learnable (an amount > 1 is a count).")
                        ] = "hardest:0.1",
        model: Annotated[str | None, typer.Option("--model", help="Base model (default model.name).")] = None,
        config: Annotated[Path | None, typer.Option("--config", help="YAML config (data, rewards).")] = None,
        set_: Annotated[list[str] | None, typer.Option("--set", help=SET_HELP)] = None,
        difficulty: Annotated[Path | None, typer.Option("--difficulty", help="Pass-rate cache (default: "
                                                        "DATA.difficulty.jsonl beside --out).")] = None,
        seed: Annotated[int, typer.Option("--seed", help="Seed of the random strategy.")] = 0,
        verbose: Annotated[bool, typer.Option("--verbose", help=VERBOSE_HELP)] = False,
    ) -> None:
        """Estimate each example's pass rate with the base model and keep a difficulty slice."""
        quiet_third_party(verbose)
        from groupwise.evaluate.jobs import run_select
        from groupwise.evaluate.selection import format_histogram

        result = run_select(data, keep, out, samples=samples, model=model, config=config,
                            overrides=list(set_ or []), difficulty=difficulty, seed=seed, console=console)
        show = output_console()
        show.print(f"pass rates of {result['rows']} examples ({samples} samples each; "
                   f"{result['generated']} newly estimated, cache: {result['difficulty_file']}):")
        show.print(format_histogram(result["histogram"]), markup=False, highlight=False)
        show.print(f"learnable share (0 < pass < 1): {100 * result['learnable_share']:.1f}%; "
                   f"mean pass rate {result['mean_pass_rate']:.3f}")
        kept_mean = result["kept_mean_pass_rate"]
        show.print(f"kept {result['kept']} rows ({result['strategy']}"
                   + (f", mean pass rate {kept_mean:.3f}" if kept_mean is not None else "") + f") -> {out}")

    @app.command("report")
    @one_line_errors
    def report(
        run_dir: Annotated[Path, typer.Argument(help="A run folder (with metrics.jsonl).")],
        out: Annotated[Path | None, typer.Option("--out", help="Report folder (default RUN_DIR/report).")
                       ] = None,
        verbose: Annotated[bool, typer.Option("--verbose", help=VERBOSE_HELP)] = False,
    ) -> None:
        """PNG plots and a self-contained report.html of a run."""
        quiet_third_party(verbose)
        from groupwise.report.run_report import build_report

        page = build_report(run_dir, out)
        output_console().print(f"report: {page}")

    @app.command("compare")
    @one_line_errors
    def compare(
        experiment: Annotated[Path, typer.Argument(help="Experiment YAML: base, seeds, variants, eval, baseline "
                                                   "(docs/compare.md).")],
        out: Annotated[Path, typer.Option("--out", help="Folder of the grid: one run folder per variant and "
                                          "seed, results.json, report.html; a rerun resumes it.")],
        parallel: Annotated[int, typer.Option("--parallel", min=1, help="Cells trained at a time, each in its "
                                              "own process with an equal share of the threads.")] = 1,
        verbose: Annotated[bool, typer.Option("--verbose", help=VERBOSE_HELP)] = False,
    ) -> None:
        """Train variants x seeds, evaluate all on the same problems, report bootstrap intervals.

        Each metric gets a 95% interval that resamples seeds and problems, and each variant its paired
        difference to the baseline (docs/compare.md)."""
        quiet_third_party(verbose)
        from groupwise.compare.grid import CompareInterrupted, run_compare
        from groupwise.train.checkpoint import TrainingInterrupted

        try:
            done = run_compare(experiment, out, parallel=parallel, console=console,
                               worker_setup=quiet_third_party, worker_args=(verbose,))
        except (TrainingInterrupted, CompareInterrupted) as stop:
            console.print(f"{stop}; rerun `groupwise compare {experiment} --out {out}` to resume", markup=False,
                          highlight=False, soft_wrap=True)
            raise typer.Exit(stop.exit_code) from None
        except KeyboardInterrupt:  # during an evaluation: its finished chunks are kept in the cell's eval/
            console.print(f"interrupted; rerun `groupwise compare {experiment} --out {out}` to resume",
                          markup=False, highlight=False, soft_wrap=True)
            raise typer.Exit(130) from None
        output_console().print(f"{done['ran']} cells run now; results: {done['results']}; report: {done['report']}; "
                        f"Markdown table: {done['table']}",
                        markup=False, highlight=False, soft_wrap=True)


def register_data_commands(app: typer.Typer, console: Console) -> None:
    """`groupwise data check`: the data as a run will use it."""
    data = typer.Typer(no_args_is_help=True, help="Look at the data as a run will use it.")
    app.add_typer(data, name="data")

    @data.command("check")
    @one_line_errors
    def check(
        config: Annotated[Path | None, typer.Argument(help="YAML config; omitted: the embedded default job.")] = None,
        set_: Annotated[list[str] | None, typer.Option("--set", help=SET_HELP)] = None,
        rows: Annotated[int, typer.Option("--rows", min=1, help="Rows to show.")] = 3,
        verbose: Annotated[bool, typer.Option("--verbose", help=VERBOSE_HELP)] = False,
    ) -> None:
        """The first rows as the model sees them, the gold each reward reads, the parsed tests; reference
        solutions (MBPP's code, HumanEval's canonical_solution) scored by the configured rewards."""
        quiet_third_party(verbose)
        from groupwise.config.load import build_config
        from groupwise.evaluate.data_check import check_data, format_check

        cfg = build_config(config, list(set_ or []))
        result = check_data(cfg, rows)
        print("\n".join(format_check(result, cfg.data.path or f"the built-in task {cfg.data.task}")))
        for kind, messages in (("note", result.notes), ("warning", result.warnings)):
            for message in messages:
                console.print(f"{kind}: {message}", markup=False, highlight=False)
        if result.failed:  # a gate for scripts: the data and the rewards do not fit
            raise typer.Exit(1)
