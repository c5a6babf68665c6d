"""Turning a data row into the text the model is prompted with: template, system message, chat template."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from transformers import PreTrainedTokenizerBase

from groupwise.config.schema import DataConfig
from groupwise.errors import GroupwiseError


def build_messages(row: dict[str, Any], template: str, system_prompt: str | None) -> list[dict[str, str]]:
    """Chat messages for one row: the template fills the user turn (of a message list: its last user message,
    with ``{prompt}`` that message's text); the row's `system`, else `system_prompt`, is added when there is
    no system message yet."""
    if isinstance(row["prompt"], list):
        messages = [dict(message) for message in row["prompt"]]
        users = [i for i, message in enumerate(messages) if message["role"] == "user"]
        if template != "{prompt}":
            if not users:
                raise GroupwiseError("data.prompt_template is set but a chat prompt has no user message to "
                                     "apply it to", "add a user message to every chat prompt, or drop "
                                     "data.prompt_template")
            messages[users[-1]]["content"] = _fill(template, {**row, "prompt": messages[users[-1]]["content"]})
    else:
        messages = [{"role": "user", "content": _fill(template, row)}]
    system = row.get("system") or system_prompt
    if system and not any(message["role"] == "system" for message in messages):
        messages.insert(0, {"role": "system", "content": system})
    return messages


def _fill(template: str, row: dict[str, Any]) -> str:
    """`template` formatted with the row's columns; a missing column is a clear error."""
    try:
        return template.format(**row)
    except (KeyError, IndexError, ValueError, AttributeError) as err:
        raise GroupwiseError(f"data.prompt_template {template!r} cannot be filled from a row: {err}",
                             f"use only the columns {sorted(row)} in braces") from err


def render_prompt(row: dict[str, Any], tokenizer: PreTrainedTokenizerBase, *, template: str = "{prompt}",
                  system_prompt: str | None = None, chat_template: bool = True) -> str:
    """The prompt text for one row, ending where the assistant's completion starts."""
    messages = build_messages(row, template, system_prompt)
    if chat_template and tokenizer.chat_template:
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return "\n\n".join(m["content"] for m in messages) + "\n"


def render_prompts(rows: list[dict[str, Any]], tokenizer: PreTrainedTokenizerBase, data: DataConfig) -> list[str]:
    """Every row's prompt text as the config's data section renders it."""
    return [render_prompt(row, tokenizer, template=data.prompt_template, system_prompt=data.system_prompt,
                          chat_template=data.chat_template) for row in rows]


def prompt_key(row: dict[str, Any], *extra: Any) -> str:
    """A stable short hash of a row's prompt (and any extra parts, e.g. its answer, a model name and K)."""
    text = json.dumps([row.get("prompt"), *extra], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


_SYSTEM_PROBE, _USER_PROBE = "<<groupwise-system>>", "<<groupwise-user>>"


def default_system_prompt(tokenizer: PreTrainedTokenizerBase) -> str | None:
    """The system prompt the tokenizer's chat template adds to a conversation that has none (SmolLM2: "You are a
    helpful AI assistant named SmolLM, ..."), found by rendering one with and one without a system message."""
    if not tokenizer.chat_template:
        return None
    try:
        with_system = tokenizer.apply_chat_template(
            [{"role": "system", "content": _SYSTEM_PROBE}, {"role": "user", "content": _USER_PROBE}], tokenize=False)
        without = tokenizer.apply_chat_template([{"role": "user", "content": _USER_PROBE}], tokenize=False)
    except Exception:  # noqa: BLE001 - a template that refuses system messages adds none of its own
        return None
    opening, rest = with_system.split(_SYSTEM_PROBE, 1)
    closing = rest.split(_USER_PROBE, 1)[0]  # the end of the system turn and the start of the user's
    if not opening or not without.startswith(opening) or closing not in without:
        return None
    found = without[len(opening): without.index(closing)]
    return found.strip() or None


def template_system_note(rows: list[dict[str, Any]], tokenizer: PreTrainedTokenizerBase, data: DataConfig
                         ) -> str | None:
    """A note when the chat template adds its default system prompt to prompts whose user wrote none (no system
    message, no `system` column, no data.system_prompt): TRL users do not expect one."""
    if not data.chat_template or data.system_prompt or not rows:
        return None
    row = rows[0]
    if row.get("system") or (isinstance(row["prompt"], list) and any(m["role"] == "system" for m in row["prompt"])):
        return None
    found = default_system_prompt(tokenizer)
    if found is None:
        return None
    return (f"the chat template adds its default system prompt {found!r} to prompts without one; set "
            "data.system_prompt to write your own, or data.chat_template: false for plain text (docs/from-trl.md)")
