"""Find the code in a completion: the fenced block (or the whole text) that defines the names the tests use.

The rule (documented in docs/sandbox.md): the candidates are every fenced block tagged with the language (or an
alias) or untagged, and the whole completion when it has no fence and reads as code (Python: it parses; Rust:
it has an ``fn``). With the tests' names known, the candidate defining the most of them wins (Python: top-level
``def``/``class``/assignment/import, read with ``ast``; Rust: ``fn NAME``); ties go to a tagged block, then to
the later one. When no candidate defines any of them: the last tagged block, else the last untagged block, else
the whole completion. Fences are found in one pass over the lines (linear time, no regex backtracking).
"""

from __future__ import annotations

import ast
import builtins
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

LANGUAGE_TAGS: dict[str, frozenset[str]] = {
    "python": frozenset({"python", "py", "python3"}),
    "rust": frozenset({"rust", "rs"}),
}
_TAG = re.compile(r"[\w+#.-]*")
_RUST_CALL = re.compile(r"\b([A-Za-z_]\w*)\s*\(")
_RUST_KEYWORDS = frozenset({"if", "while", "for", "match", "loop", "return", "fn", "Some", "Ok", "Err", "Box",
                            "vec", "move", "in", "as", "let", "mut", "ref"})


@dataclass(frozen=True)
class Block:
    """One closed fenced block: its info-string tag (lower case, "" when untagged) and its body."""

    tag: str
    body: str


def completion_text(completion: Any) -> str:
    """A completion as text: a string, or the last message's content of a conversational completion."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, list) and completion and isinstance(completion[-1], dict):
        return str(completion[-1].get("content") or "")
    return "" if completion is None else str(completion)


def _fence(line: str) -> tuple[str, int, str] | None:
    """(fence char, run length, rest of the line) when the line opens or closes a fence."""
    stripped = line.lstrip(" \t")
    char = stripped[:1]
    if char not in ("`", "~"):
        return None
    run = len(stripped) - len(stripped.lstrip(char))
    return (char, run, stripped[run:]) if run >= 3 else None


def fenced_blocks(text: str) -> list[Block]:
    """Every closed ``` or ~~~ block, in order; closed by a bare fence of the same char, at least as long."""
    blocks: list[Block] = []
    opened: tuple[str, int, str] | None = None
    body: list[str] = []
    for line in text.splitlines(keepends=True):
        fence = _fence(line)
        if opened is None:
            if fence is not None:
                char, run, rest = fence
                tag = _TAG.match(rest.lstrip(" \t"))
                opened, body = (char, run, tag.group(0).lower() if tag else ""), []
            continue
        if fence is not None and fence[0] == opened[0] and fence[1] >= opened[1] and not fence[2].strip():
            blocks.append(Block(opened[2], "".join(body)))
            opened = None
        else:
            body.append(line)
    return blocks


def python_defines(code: str) -> set[str]:
    """Names bound at the top level of Python code (functions, classes, assignments, imports); empty when it
    does not parse."""
    tree = _parse(code)
    if tree is None:
        return set()
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names |= {t.id for t in targets if isinstance(t, ast.Name)}
        elif isinstance(node, ast.Import | ast.ImportFrom):
            names |= {(a.asname or a.name).split(".")[0] for a in node.names}
    return names


def names_used_by_tests(tests: Iterable[str], language: str) -> set[str]:
    """The names the tests use but do not define themselves (builtins and Rust macros left out)."""
    names: set[str] = set()
    for test in tests:
        if language == "rust":
            names |= {m.group(1) for m in _RUST_CALL.finditer(test)} - _RUST_KEYWORDS
            continue
        tree = _parse(test)
        if tree is None:
            continue
        loads, stores = set(), set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Name):
                (loads if isinstance(node.ctx, ast.Load) else stores).add(node.id)
        names |= {n for n in loads - stores if not hasattr(builtins, n)}
    return names


def _parse(code: str) -> ast.Module | None:
    try:
        return ast.parse(code)
    except Exception:  # noqa: BLE001 - SyntaxError, null bytes, surrogates, nesting too deep: not code
        return None


def _defined(code: str, names: set[str], language: str) -> int:
    if language == "python":
        return len(python_defines(code) & names)
    return sum(re.search(rf"\bfn\s+{re.escape(name)}\b", code) is not None for name in names)


def _whole_is_code(text: str, language: str) -> bool:
    if not text.strip():
        return False
    if language == "python":
        return _parse(text) is not None
    return re.search(r"\bfn\s+\w", text) is not None


def extract_code(text: str, language: str, names: Iterable[str] | None = None) -> str | None:
    """The candidate that defines the most of ``names`` (the rule in this module's docstring); None if none."""
    tags = LANGUAGE_TAGS.get(language, frozenset({language}))
    blocks = fenced_blocks(text)
    candidates = [(b.tag in tags, b.body) for b in blocks if (b.tag in tags or not b.tag) and b.body.strip()]
    if not blocks and _whole_is_code(text, language):
        candidates.append((False, text))
    wanted = set(names or ())
    if wanted and candidates:
        ranked = [(_defined(body, wanted, language), tagged, i) for i, (tagged, body) in enumerate(candidates)]
        best = max(ranked)
        if best[0] > 0:
            return candidates[best[2]][1]
    for want_tagged in (True, False):
        found = [body for tagged, body in candidates if tagged == want_tagged]
        if found:
            return found[-1]
    return None


def with_prompt_code(code: str | None, completion: str, prompt: str, entry_point: str) -> str | None:
    """HumanEval's native format: the prompt holds the signature and docstring, the completion only the body.
    When `code` (what `extract_code` found) does not define `entry_point` and the prompt does, the program is
    the prompt followed by the completion's body (its fenced block, else its text); else `code` as it was."""
    if (code is not None and entry_point in python_defines(code)) or entry_point not in python_defines(prompt):
        return code
    body = code if code is not None else completion
    program = prompt if prompt.endswith("\n") else prompt + "\n"
    program += body
    return program if entry_point in python_defines(program) else code
