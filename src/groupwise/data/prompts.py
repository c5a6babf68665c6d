"""Turning a data row into the text the model is prompted with: template, system message, chat template."""

from __future__ import annotations

from typing import Any

from transformers import PreTrainedTokenizerBase

from groupwise.errors import GroupwiseError


def build_messages(row: dict[str, Any], template: str, system_prompt: str | None) -> list[dict[str, str]]:
    """Chat messages for one row; a row whose prompt is already a message list is used as it is."""
    if isinstance(row["prompt"], list):
        return row["prompt"]
    try:
        user = template.format(**row)
    except (KeyError, IndexError, ValueError) as err:
        raise GroupwiseError(f"data.prompt_template {template!r} cannot be filled from a row: {err}",
                             f"use only the columns {sorted(row)} in braces") from err
    system = row.get("system") or system_prompt
    return ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": user}]


def render_prompt(row: dict[str, Any], tokenizer: PreTrainedTokenizerBase, *, template: str = "{prompt}",
                  system_prompt: str | None = None, chat_template: bool = True) -> str:
    """The prompt text for one row, ending where the assistant's completion starts."""
    messages = build_messages(row, template, system_prompt)
    if chat_template and tokenizer.chat_template:
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return "\n\n".join(m["content"] for m in messages) + "\n"
