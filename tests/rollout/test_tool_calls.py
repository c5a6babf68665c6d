"""Tool calls parsed from a turn, tools from an environment's methods, and how the chat template shows them."""

from __future__ import annotations

import pytest

from groupwise.errors import GroupwiseError
from groupwise.models.tiny import CHAT_TEMPLATE, build_tiny_tokenizer
from groupwise.rollout.episodes.chat import ChatFormat
from groupwise.rollout.episodes.tool_calls import ToolCall, parse_tool_calls, tool_schemas


def test_tool_calls_are_parsed_in_order_and_a_bad_one_says_why():
    text = ('I will compute. <tool_call>{"name": "python", "arguments": {"code": "print(1)"}}</tool_call>\n'
            '<tool_call> {"name": "f", "arguments": "{\\"x\\": 2}"} </tool_call>'
            '<tool_call>{"name": "g", "parameters": {"y": 3}}</tool_call>'
            '<tool_call>["not", "a", "call"]</tool_call>'
            '<tool_call>{"name": "h", "arguments": {"z": 1}}')  # unclosed at the end of the turn
    assert parse_tool_calls(text) == [
        ToolCall("python", {"code": "print(1)"}), ToolCall("f", {"x": 2}), ToolCall("g", {"y": 3}),
        ToolCall(error='a tool call needs {"name": ..., "arguments": {...}}'), ToolCall("h", {"z": 1})]
    assert parse_tool_calls("no call here") == []
    assert parse_tool_calls('<tool_call>{"name": "f", "arguments": 3}</tool_call>') == [
        ToolCall("f", error="the tool call's arguments are not a JSON object")]


class Tools:
    def reset(self, **row):
        return None

    def lookup(self, word: str, limit: int = 3) -> str:
        """Look a word up.

        Args:
            word: The word.
            limit: How many senses at most.
        """
        return word

    def _helper(self) -> None:
        pass


def test_public_methods_but_reset_are_tools_and_one_without_a_docstring_is_one_clear_line():
    assert tool_schemas(Tools()) == [{"type": "function", "function": {
        "name": "lookup", "description": "Look a word up.", "parameters": {"type": "object", "properties": {
            "word": {"type": "string", "description": "The word."},
            "limit": {"type": "integer", "description": "How many senses at most."}}, "required": ["word"]},
        "return": {"type": "string"}}}]

    class Undocumented(Tools):
        def guess(self, word: str) -> str:
            return word

    with pytest.raises(GroupwiseError) as raised:
        tool_schemas(Undocumented())
    assert raised.value.problem.startswith("Undocumented.guess cannot be offered as a tool: ")


def test_a_template_that_renders_tools_gets_them_and_one_that_does_not_gets_a_system_note():
    tools = tool_schemas(Tools())
    messages = [{"role": "user", "content": "hi"}]
    plain = ChatFormat(build_tiny_tokenizer())  # like SmolLM2's template: no tools
    shown = plain.shown(messages, tools)
    assert [m["role"] for m in shown] == ["system", "user"] and '{"name": "lookup"' in shown[0]["content"]
    assert plain.prompt(shown, tools) == f"s:{shown[0]['content']}\nu:hi\na:"
    tokenizer = build_tiny_tokenizer()
    tokenizer.chat_template = "{% if tools %}tools:{{ tools | length }}\n{% endif %}" + CHAT_TEMPLATE
    native = ChatFormat(tokenizer)
    assert native.shown(messages, tools) == messages and native.prompt(messages, tools) == "tools:1\nu:hi\na:"
