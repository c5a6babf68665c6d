"""A small Rust lexer for test statements, and comparison of ``{:?}`` (Debug) outputs token by token.

The lexer knows enough of Rust to find macro calls outside string and char literals and comments, split
their arguments at top-level commas, and find a condition's top-level comparison operator.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_TOKEN = re.compile(r"""
    (?P<ws>\s+|//[^\n]*)
  | (?P<str>b?r(?P<hashes>\#*)"(?:.|\n)*?"(?P=hashes)|b?"(?:\\.|\\\n|[^"\\])*")
  | (?P<char>b?'(?:\\(?:u\{[0-9a-fA-F]{1,6}\}|x[0-9a-fA-F]{2}|.)|[^'\\\n])')
  | (?P<life>'[A-Za-z_][A-Za-z0-9_]*)
  | (?P<num>(?:0x[0-9a-fA-F_]+|0o[0-7_]+|0b[01_]+|\d[\d_]*(?:\.(?![.A-Za-z_])[\d_]*)?(?:[eE][+-]?[\d_]+)?)
            (?:[iu](?:8|16|32|64|128|size)|f32|f64)?)
  | (?P<ident>(?:r\#)?[A-Za-z_][A-Za-z0-9_]*)
  | (?P<punct>::|->|=>|==|!=|<=|>=|&&|\|\||\.\.=|\.\.\.|\.\.|<<=|>>=|<<|>>|[-+*/%^&|]=|[^\s])
""", re.X)
_OPEN, _CLOSE = ("(", "[", "{"), (")", "]", "}")


@dataclass(frozen=True)
class Tok:
    """One token: its kind (str, char, life, num, ident, punct) and where it sits in the source."""

    kind: str
    text: str
    start: int
    end: int


def lex(src: str) -> list[Tok]:
    """The tokens of ``src`` (comments and whitespace dropped); raises ValueError on what it cannot read."""
    out: list[Tok] = []
    pos = 0
    while pos < len(src):
        if src.startswith("/*", pos):  # block comments nest in Rust
            depth, pos = 1, pos + 2
            while depth and pos < len(src):
                if src.startswith("/*", pos):
                    depth, pos = depth + 1, pos + 2
                elif src.startswith("*/", pos):
                    depth, pos = depth - 1, pos + 2
                else:
                    pos += 1
            if depth:
                raise ValueError("unterminated block comment")
            continue
        match = _TOKEN.match(src, pos)
        if match is None:
            raise ValueError(f"cannot read Rust at {pos}")
        kind = match.lastgroup if match.lastgroup != "hashes" else "str"
        if kind != "ws":
            out.append(Tok(str(kind), match.group(), pos, match.end()))
        pos = match.end()
    return out


def matching(toks: list[Tok], i: int) -> int:
    """Index of the bracket closing the one at ``toks[i]``; raises ValueError when unbalanced."""
    depth = 0
    for j in range(i, len(toks)):
        text = toks[j].text if toks[j].kind == "punct" else ""
        if text in _OPEN:
            depth += 1
        elif text in _CLOSE:
            depth -= 1
            if depth == 0:
                return j
    raise ValueError("unbalanced brackets")


def top_level(toks: list[Tok]) -> list[int]:
    """Indices of the tokens at bracket depth 0 (turbofish ``::<...>`` counts as a bracket)."""
    out, depth, angle = [], 0, 0
    for j, tok in enumerate(toks):
        text = tok.text if tok.kind == "punct" else ""
        if text == "<" and j and toks[j - 1].text == "::":
            angle += 1
        elif text == ">" and angle:
            angle -= 1
        elif text in _OPEN:
            depth += 1
        elif text in _CLOSE:
            depth -= 1
        elif depth == 0 and angle == 0:
            out.append(j)
    return out


def split_args(toks: list[Tok]) -> list[list[Tok]]:
    """Split a macro's argument tokens at top-level commas (a trailing comma is allowed)."""
    commas = [j for j in top_level(toks) if toks[j].text == ","]
    parts, start = [], 0
    for j in [*commas, len(toks)]:
        parts.append(toks[start:j])
        start = j + 1
    return [p for p in parts if p] if parts and not parts[-1] else parts


# --- Debug output as comparable tokens --------------------------------------------------------------------

_DEBUG_TOKEN = re.compile(r"""\s*(?:
    (?P<str>"(?:\\.|[^"\\])*")
  | (?P<char>'(?:\\(?:u\{[0-9a-fA-F]+\}|.)|[^'\\])')
  | (?P<num>-?(?:inf|NaN|\d+(?:\.\d+)?(?:e-?\d+)?)(?![A-Za-z0-9_]))
  | (?P<word>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<punct>\S))""", re.X)
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "0": "\0", "\\": "\\", "'": "'", '"': '"'}


def _unescape(body: str) -> str:
    """Decode Rust string escapes (``\\n``, ``\\u{..}``, ``\\x..``, line continuations)."""
    out, i = [], 0
    while i < len(body):
        ch = body[i]
        if ch != "\\" or i + 1 == len(body):
            out.append(ch)
            i += 1
            continue
        nxt = body[i + 1]
        if nxt == "u" and (m := re.match(r"u\{([0-9a-fA-F_]{1,8})\}", body[i + 1:])):
            out.append(chr(int(m.group(1).replace("_", ""), 16)))
            i += 1 + m.end()
        elif nxt == "x" and i + 3 < len(body) + 1:
            out.append(chr(int(body[i + 2:i + 4], 16)))
            i += 4
        elif nxt == "\n":
            i += 2
            while i < len(body) and body[i] in " \t\n\r":
                i += 1
        else:
            out.append(_ESCAPES.get(nxt, nxt))
            i += 2
    return "".join(out)


Value = tuple[str, object]  # ("num", int|float) | ("str", text) | ("char", text) | ("word"/"punct", text)


def debug_tokens(text: str) -> list[Value] | None:
    """A Debug output as tokens: numbers parsed, strings and chars decoded; None when unreadable."""
    out: list[Value] = []
    pos, text = 0, text.strip()
    while pos < len(text):
        match = _DEBUG_TOKEN.match(text, pos)
        if match is None:
            return None
        kind, raw = str(match.lastgroup), match.group(match.lastgroup or 0)
        if kind == "num":
            out.append(("num", float(raw) if re.search(r"[.eiN]", raw) else int(raw)))
        elif kind in ("str", "char"):
            try:
                out.append((kind, _unescape(raw[1:-1])))
            except ValueError:
                return None
        else:
            out.append((kind, raw))
        pos = match.end()
    return out


def same_debug(actual: str, expected: list[Value]) -> bool:
    """Whether a Debug output equals the expected tokens (numbers compared by value: ``3 == 3.0``)."""
    got = debug_tokens(actual)
    return got is not None and len(got) == len(expected) and all(
        (a[0] == e[0] or {a[0], e[0]} <= {"num"}) and a[1] == e[1] for a, e in zip(got, expected, strict=True))


def ordered(actual: str, expected: list[Value], op: str) -> bool:
    """``actual op expected`` for single numbers (``<``, ``<=``, ``>``, ``>=``); False for anything else."""
    got = debug_tokens(actual)
    if got is None or len(got) != 1 or len(expected) != 1 or got[0][0] != "num" or expected[0][0] != "num":
        return False
    a, e = got[0][1], expected[0][1]
    assert isinstance(a, int | float) and isinstance(e, int | float)
    return {"<": a < e, "<=": a <= e, ">": a > e, ">=": a >= e}[op]
