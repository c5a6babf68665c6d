"""The text of an episode's turns through the tokenizer's chat template: the first prompt (with the tools), and
what follows each assistant turn up to the start of the next one (the environment's messages).

The model's own tokens are never re-rendered or re-tokenized: an episode is its first prompt, then each turn's
sampled tokens and the tokens of what came back, so the trainer scores exactly what was sampled.
"""

from __future__ import annotations

from typing import Any

from transformers import PreTrainedTokenizerBase

from groupwise.errors import GroupwiseError
from groupwise.rollout.episodes.tool_calls import tools_description

Message = dict[str, Any]
_MARK = "\x00groupwise-turn\x00"  # stands for an assistant turn's text while the template's framing is measured
_BASE = [{"role": "user", "content": "?"}, {"role": "assistant", "content": _MARK}]


class ChatFormat:
    """Renders turns with `tokenizer`'s chat template; `tools` through the template when it renders them (its
    `tools=`), else as a description in the system message."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase) -> None:
        if not tokenizer.chat_template:
            raise GroupwiseError("an environment needs a chat template, and this tokenizer has none",
                                 "use a chat model (e.g. smollm2-135m) or set tokenizer.chat_template")
        self.tokenizer = tokenizer
        self._native: dict[str, bool] = {}
        before = self._render(_BASE)
        self._framing = before[before.index(_MARK) + len(_MARK):]  # what the template puts after a turn's text

    def _render(self, messages: list[Message], tools: list[dict[str, Any]] | None = None,
                generation_prompt: bool = False) -> str:
        return self.tokenizer.apply_chat_template(messages, tools=tools or None, tokenize=False,
                                                  add_generation_prompt=generation_prompt)

    def renders_tools(self, tools: list[dict[str, Any]]) -> bool:
        """Whether the template shows `tools` at all (SmolLM2's ignores them; Qwen's renders them)."""
        key = repr(tools)
        if key not in self._native:
            plain = [{"role": "user", "content": "?"}]
            self._native[key] = self._render(plain, tools) != self._render(plain)
        return self._native[key]

    def shown(self, messages: list[Message], tools: list[dict[str, Any]]) -> list[Message]:
        """The first messages as the model sees them: with the tools described in the system message when the
        template does not render `tools`."""
        if tools and not self.renders_tools(tools):
            return with_system_note(messages, tools_description(tools))
        return messages

    def prompt(self, messages: list[Message], tools: list[dict[str, Any]]) -> str:
        """The first prompt of `shown` messages, ending where the assistant's first turn starts."""
        return self._render(messages, tools if tools and self.renders_tools(tools) else None,
                            generation_prompt=True)

    def after_turn(self, replies: list[Message], eos_text: str | None) -> str:
        """The text between an assistant turn's last token and the next turn's first: the rest of the turn's
        framing (less the end-of-turn token `eos_text` the model sampled, when the template writes it), the
        `replies` and the next assistant header."""
        after = self._render(_BASE + replies, generation_prompt=True)
        before = self._render(_BASE)
        if not after.startswith(before):
            raise GroupwiseError("the chat template renders a conversation differently once messages follow it, "
                                 "so an episode's turns cannot be appended token by token",
                                 "use a chat template whose rendering of earlier turns does not change")
        framing = self._framing
        if eos_text and framing.startswith(eos_text):
            framing = framing[len(eos_text):]
        return framing + after[len(before):]


def with_system_note(messages: list[Message], note: str) -> list[Message]:
    """`messages` with `note` added to their system message, or in a new one at the start."""
    out = [dict(message) for message in messages]
    if out and out[0]["role"] == "system":
        out[0]["content"] = f"{out[0]['content']}\n\n{note}"
        return out
    return [{"role": "system", "content": note}, *out]
