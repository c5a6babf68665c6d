"""A Python program run in the sandbox, its output read back as text: what the `python` tool returns and what
`code_feedback` shows of failing tests. Same interpreter, limits and isolation as the code rewards."""

from __future__ import annotations

from pathlib import Path

from groupwise.rewards.judges.pyexec import python_interpreter, source_bytes
from groupwise.sandbox import SandboxLimits, run_sandboxed

FLAGS = ("-I", "-S", "-B")  # isolated mode, no site-packages (the standard library only), no .pyc writes
NOTEBOOK_CELL = Path(__file__).with_name("notebook_cell.py")  # runs main.py, then shows a last expression's value


def run_python(code: str, limits: SandboxLimits, max_chars: int, files: dict[str, str] | None = None,
               echo: bool = False) -> str:
    """Run `code` as main.py (beside `files`) and return stdout then stderr, cut to `max_chars`; a run stopped by
    a limit says so. `echo`: a last bare expression's value is printed too, as a notebook cell shows it."""
    binary, binds = python_interpreter()
    sources = {"main.py": source_bytes(code), **(files or {})}
    if echo:
        sources[NOTEBOOK_CELL.name] = NOTEBOOK_CELL.read_bytes()
    entry = NOTEBOOK_CELL.name if echo else "main.py"
    result = run_sandboxed([binary, *FLAGS, entry], sources, limits, extra_ro_binds=binds)
    text = "\n".join(part.rstrip() for part in (result.stdout, result.stderr) if part.strip())
    if result.limit_hit:
        text += "\n(stopped: it ran into a sandbox limit)"
    return shorten(text.strip() or "(no output)", max_chars)


def shorten(text: str, max_chars: int) -> str:
    """`text` cut to its first and last `max_chars` / 2 characters (a traceback's last line is what matters)."""
    if len(text) <= max_chars:
        return text
    half = max_chars // 2
    return f"{text[:half]}\n... ({len(text) - 2 * half} characters cut) ...\n{text[-half:]}"
