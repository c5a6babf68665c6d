"""Rendering rows into prompts: templates and system messages for plain and chat (message list) prompts."""

from __future__ import annotations

import pytest

from groupwise.data.prompts import build_messages, render_prompt
from groupwise.errors import GroupwiseError

# like SmolLM2's: a built-in system message when the conversation has none
BUILTIN_SYSTEM = ("{% if messages[0]['role'] != 'system' %}s:BUILTIN\n{% endif %}"
                  "{% for m in messages %}{{ m['role'][0] }}:{{ m['content'] }}\n{% endfor %}"
                  "{% if add_generation_prompt %}a:{% endif %}")
CHAT = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "What is 2 + 2?"}]


@pytest.fixture
def tokenizer(tiny):
    tokenizer = tiny[1]
    tokenizer.chat_template = BUILTIN_SYSTEM
    return tokenizer


def test_system_prompt_reaches_a_chat_prompt(tokenizer) -> None:
    """The Found case: a list prompt ignored data.system_prompt and got the tokenizer's built-in one."""
    text = render_prompt({"prompt": CHAT}, tokenizer, system_prompt="Be brief.")
    assert text == "s:Be brief.\nu:Hi\na:Hello!\nu:What is 2 + 2?\na:"
    assert render_prompt({"prompt": CHAT, "system": "Row says."}, tokenizer, system_prompt="Be brief.") == (
        "s:Row says.\nu:Hi\na:Hello!\nu:What is 2 + 2?\na:")


def test_a_chat_prompts_own_system_message_wins(tokenizer) -> None:
    chat = [{"role": "system", "content": "Own."}, *CHAT[2:]]
    assert render_prompt({"prompt": chat}, tokenizer, system_prompt="Be brief.") == "s:Own.\nu:What is 2 + 2?\na:"


def test_template_fills_the_last_user_message(tokenizer) -> None:
    """The Found case: prompt_template was silently ignored for list prompts."""
    row = {"prompt": CHAT, "level": "easy"}
    text = render_prompt(row, tokenizer, template="{prompt} ({level}) Answer with a number.")
    assert text == "s:BUILTIN\nu:Hi\na:Hello!\nu:What is 2 + 2? (easy) Answer with a number.\na:"
    assert CHAT[2]["content"] == "What is 2 + 2?"  # the row itself is not changed


def test_template_without_a_user_message_is_an_error() -> None:
    with pytest.raises(GroupwiseError, match="no user message"):
        build_messages({"prompt": [{"role": "system", "content": "S"}]}, "Q: {prompt}", None)
    assert build_messages({"prompt": [{"role": "system", "content": "S"}]}, "{prompt}", "X") == [
        {"role": "system", "content": "S"}]


def test_plain_prompts_are_unchanged(tokenizer) -> None:
    assert build_messages({"prompt": "2+2?"}, "Q: {prompt}", "Sys") == [
        {"role": "system", "content": "Sys"}, {"role": "user", "content": "Q: 2+2?"}]
    assert render_prompt({"prompt": "2+2?"}, tokenizer, chat_template=False, system_prompt="Sys") == "Sys\n\n2+2?\n"
    with pytest.raises(GroupwiseError, match="cannot be filled"):
        build_messages({"prompt": "x"}, "{question}", None)


SMOLLM2_LIKE = (  # SmolLM2's template adds this system turn when the conversation has none
    "{% for m in messages %}{% if loop.first and m['role'] != 'system' %}<|im_start|>system\nYou are SmolLM."
    "<|im_end|>\n{% endif %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def test_the_template_default_system_prompt_is_found_and_noted_only_when_the_user_wrote_none() -> None:
    from groupwise.config.schema import DataConfig
    from groupwise.data.prompts import default_system_prompt, template_system_note
    from groupwise.models.tiny import build_tiny_tokenizer

    plain, smol = build_tiny_tokenizer(), build_tiny_tokenizer()
    smol.chat_template = SMOLLM2_LIKE
    assert default_system_prompt(smol) == "You are SmolLM." and default_system_prompt(plain) is None
    rows = [{"prompt": "What is 2 + 2?"}]
    assert template_system_note(rows, smol, DataConfig()).startswith(
        "the chat template adds its default system prompt 'You are SmolLM.' to prompts without one; ")
    assert template_system_note(rows, plain, DataConfig()) is None
    assert template_system_note(rows, smol, DataConfig(system_prompt="Be brief.")) is None
    assert template_system_note([{"prompt": "q", "system": "Mine."}], smol, DataConfig()) is None
    assert template_system_note(rows, smol, DataConfig(chat_template=False)) is None
