"""`groupwise serve-rollout`: a vLLM rollout server for a trainer with `rollout.engine: vllm_server`."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from groupwise.cli.errors import one_line_errors
from groupwise.cli.quiet import VERBOSE_HELP, quiet_third_party


def register_serve_command(app: typer.Typer, console: Console) -> None:
    """Add `groupwise serve-rollout` to `app`."""

    @app.command("serve-rollout")
    @one_line_errors
    def serve_rollout(
        model: Annotated[str, typer.Option("--model", help="The model the trainer trains (same name or path as its "
                                           "model.name); its weights are replaced by the trainer's at the start.")],
        port: Annotated[int, typer.Option("--port", min=0, max=65535, help="Port to listen on (0: any free one, "
                                          "printed at start).")] = 8471,
        host: Annotated[str, typer.Option("--host", help="Address to listen on (loopback by default).")
                        ] = "127.0.0.1",
        config: Annotated[Path | None, typer.Option("--config", help="YAML config: model.dtype and rollout.vllm "
                                                    "settings.")] = None,
        set_: Annotated[list[str] | None, typer.Option("--set", help="Override one config value (repeatable).")
                        ] = None,
        verbose: Annotated[bool, typer.Option("--verbose", help=VERBOSE_HELP)] = False,
    ) -> None:
        """Serve rollouts with vLLM on loopback for `rollout.engine: vllm_server` (docs/vllm.md)."""
        quiet_third_party(verbose)
        from groupwise.config.load import build_config
        from groupwise.rollout.vllm_backend.server import serve

        cfg = build_config(config, list(set_ or []) + [f"model.name={model}"])
        signal.signal(signal.SIGTERM, signal.default_int_handler)  # SIGTERM stops it as Ctrl-C does: cleaned up
        try:
            serve(cfg, host, port, announce=lambda line: console.print(line, markup=False, highlight=False))
        except KeyboardInterrupt:
            console.print("rollout server stopped")
