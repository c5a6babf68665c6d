"""Find the code in a completion: the last fenced block of the wanted language, else the last bare block."""

from __future__ import annotations

import re
from typing import Any

LANGUAGE_TAGS: dict[str, frozenset[str]] = {
    "python": frozenset({"python", "py", "python3"}),
    "rust": frozenset({"rust", "rs"}),
}
_FENCE = re.compile(r"^[ \t]*(`{3,}|~{3,})[ \t]*([\w+#.-]*)[^\n]*\n(.*?)^[ \t]*\1[ \t]*$", re.M | re.S)


def completion_text(completion: Any) -> str:
    """A completion as text: a string, or the last message's content of a conversational completion."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, list) and completion and isinstance(completion[-1], dict):
        return str(completion[-1].get("content") or "")
    return "" if completion is None else str(completion)


def extract_code(text: str, language: str) -> str | None:
    """The last ```<language> block (aliases: py, rs), else the last untagged block; None if neither."""
    tags = LANGUAGE_TAGS.get(language, frozenset({language}))
    tagged: str | None = None
    bare: str | None = None
    for match in _FENCE.finditer(text):
        tag, body = match.group(2).lower(), match.group(3)
        if tag in tags:
            tagged = body
        elif not tag:
            bare = body
    code = tagged if tagged is not None else bare
    return code if code is not None and code.strip() else None
