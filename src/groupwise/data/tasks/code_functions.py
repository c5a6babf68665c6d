"""`python-functions` and `rust-functions`: small function-writing problems scored by `code_tests`."""

from __future__ import annotations

import json
import random
from functools import cache
from importlib import resources
from typing import Any

from groupwise.data.tasks.registry import register_task
from groupwise.errors import GroupwiseError

HELDOUT_SHARE = 0.2
SPLITS = ("train", "heldout")
PROMPTS = {
    "python": ("Write a Python function with the exact signature `{signature}` that {description}\n"
               "Use only the standard library. Reply with the complete function in a ```python code block."),
    "rust": ("Write a Rust function with the exact signature `{signature}` that {description}\n"
             "Use only the standard library. Reply with the complete function in a ```rust code block."),
}
_FILES = {"python": "python_functions.jsonl", "rust": "rust_functions.jsonl"}


@cache
def load_problems(language: str) -> tuple[dict[str, Any], ...]:
    """Every problem of a language, as stored: entry_point, signature, description, reference, tests."""
    text = resources.files("groupwise.data.tasks").joinpath(_FILES[language]).read_text(encoding="utf-8")
    return tuple(json.loads(line) for line in text.splitlines() if line.strip())


def _row(problem: dict[str, Any], language: str, prompt: str) -> dict[str, Any]:
    return {"prompt": prompt.format(signature=problem["signature"], description=problem["description"]),
            "tests": list(problem["tests"]), "reference": problem["reference"],
            "entry_point": problem["entry_point"]}


def build_code_functions(language: str, split: str, size: int | None, seed: int,
                         prompt: str | None = None) -> list[dict[str, Any]]:
    """A seeded shuffle of the problems; the last 20% are held out; ``size`` truncates or cycles."""
    if split not in SPLITS:
        raise GroupwiseError(f"unknown split '{split}' for the {language}-functions task",
                             "use train or heldout")
    problems = list(load_problems(language))
    random.Random(f"{language}-functions:{seed}").shuffle(problems)
    n_heldout = max(1, round(len(problems) * HELDOUT_SHARE))
    chosen = problems[-n_heldout:] if split == "heldout" else problems[:-n_heldout]
    if size is not None:
        if size < 1:
            raise GroupwiseError(f"task size must be positive, got {size}", "set data.size to 1 or more")
        chosen = [chosen[i % len(chosen)] for i in range(size)]
    template = prompt or PROMPTS[language]
    return [_row(p, language, template) for p in chosen]


@register_task("python-functions", rewards=[{"name": "code_tests", "params": {"language": "python"}}])
def build_python_functions(split: str, size: int | None, seed: int, *, prompt: str | None = None
                           ) -> list[dict[str, Any]]:
    """Python function problems (tests are `assert` snippets run by `code_tests` with language=python)."""
    return build_code_functions("python", split, size, seed, prompt)


@register_task("rust-functions", rewards=[{"name": "code_tests", "params": {"language": "rust"}}])
def build_rust_functions(split: str, size: int | None, seed: int, *, prompt: str | None = None
                         ) -> list[dict[str, Any]]:
    """Rust function problems (tests are `assert_eq!` statements run by `code_tests` with language=rust)."""
    return build_code_functions("rust", split, size, seed, prompt)
