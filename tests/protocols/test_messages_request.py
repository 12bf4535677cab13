"""The shared readers of an Anthropic Messages request (`llm_proxy.protocols.messages_request`),
through the three translators that use them: each names its own upstream in a refusal."""

from __future__ import annotations

from typing import Any

import pytest

from llm_proxy.protocols import messages_request as request
from llm_proxy.protocols.converse import converse_request
from llm_proxy.protocols.errors import TranslationError
from llm_proxy.protocols.gemini import gemini_request
from llm_proxy.protocols.messages_via_chat import chat_request

TARGET = request.Target("Somewhere", request.UNSUPPORTED_BLOCKS)


def _gemini(data: dict[str, Any]) -> object:
    return gemini_request(data, model="gemini-2.5-flash")


def _converse(data: dict[str, Any]) -> object:
    return converse_request(data, model="anthropic.claude-sonnet-4-5")


def _chat(data: dict[str, Any]) -> object:
    return chat_request(data, model="gpt-4o")


@pytest.mark.parametrize(
    ("translate", "upstream"),
    [(_gemini, "Gemini"), (_converse, "Bedrock"), (_chat, "this model")],
)
def test_each_translator_names_its_upstream(translate: Any, upstream: str) -> None:
    search = {"type": "search_result", "source": "s", "title": "t", "content": []}
    with pytest.raises(TranslationError) as raised:
        translate({"max_tokens": 5, "messages": [{"role": "user", "content": [search]}]})
    assert raised.value.param == "messages[0].content[0]"
    assert raised.value.message.endswith(f"search_result blocks are not supported by {upstream}")
    server_tool = {"type": "web_search_20250305", "name": "web_search"}
    with pytest.raises(TranslationError) as raised:
        translate({"max_tokens": 5, "messages": [], "tools": [server_tool]})
    assert raised.value.param == "tools[0].type"
    assert raised.value.message.endswith(f"is not supported by {upstream}")


def test_only_the_chat_translator_refuses_documents() -> None:
    document = {"type": "document", "source": {"type": "text", "data": "hi"}}
    data = {"max_tokens": 5, "messages": [{"role": "user", "content": [document]}]}
    with pytest.raises(TranslationError, match="document blocks are not supported"):
        _chat(data)
    _gemini(data)
    _converse(data)


def test_content_is_a_string_or_a_list_of_blocks() -> None:
    assert request.content_blocks("hi", "x") == [{"type": "text", "text": "hi"}]
    with pytest.raises(TranslationError) as raised:
        request.content_blocks(["hi"], "messages[0].content")
    assert raised.value.param == "messages[0].content"


def test_text_of_names_what_came_instead() -> None:
    assert request.text_of({"type": "text", "text": "a"}, "system[0]", TARGET) == "a"
    with pytest.raises(TranslationError, match="a text block expected, not 'image'"):
        request.text_of({"type": "image"}, "system[0]", TARGET)
    with pytest.raises(TranslationError, match="not supported by Somewhere"):
        request.text_of({"type": "mcp_tool_use"}, "system[0]", TARGET)
    with pytest.raises(TranslationError) as raised:
        request.text_of({"type": "text", "text": 3}, "system[0]", TARGET)
    assert raised.value.param == "system[0].text"


def test_an_unknown_block_type_is_refused_too() -> None:
    with pytest.raises(TranslationError, match="unknown content block type 'hologram'"):
        raise request.refused_block("hologram", "m", TARGET)
    with pytest.raises(TranslationError, match="server tool calls are not supported"):
        raise request.refused_block("server_tool_use", "m", TARGET)


def test_custom_tool_checks_the_tool_and_its_name() -> None:
    tool = {"name": "f", "input_schema": {"type": "object"}}
    assert request.custom_tool(tool, "tools[0]", TARGET) == "f"
    assert request.custom_tool({"type": "custom", "name": "g"}, "tools[0]", TARGET) == "g"
    for bad, param in (("f", "tools[0]"), ({"name": ""}, "tools[0].name")):
        with pytest.raises(TranslationError) as raised:
            request.custom_tool(bad, "tools[0]", TARGET)
        assert raised.value.param == param
