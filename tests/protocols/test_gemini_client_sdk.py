"""The real `google-genai` SDK against `gemini_client` and `GeminiFromMessages`: the requests
the SDK sends go through `messages_from_gemini` (and countTokens), and the translated answers,
streams, errors and model pages go back through the SDK's own HTTP parsing and response types,
its chat history and its automatic function calling. The SDK's HTTP client gets the bytes from
a MockTransport: no server is involved, only the SDK's handling of pure bytes."""

from __future__ import annotations

import base64
import importlib
from collections.abc import Iterator
from typing import Any

import orjson
import pydantic
import pytest

from llm_proxy.protocols.gemini_client import (
    GeminiClientCall,
    count_tokens_answer,
    count_tokens_request,
    gemini_answer,
    gemini_error,
    gemini_model,
    gemini_models,
    messages_from_gemini,
)
from llm_proxy.protocols.gemini_client_stream import GeminiFromMessages
from tests.helpers.grammar_gemini import check_gemini_stream
from tests.protocols.test_gemini_client_stream import (
    end,
    event,
    start,
    text_block,
    thinking_block,
    tool_block,
)

genai = pytest.importorskip("google.genai")
types = importlib.import_module("google.genai.types")
errors = importlib.import_module("google.genai.errors")
http = importlib.import_module("httpx")

SIGNATURE = "EqQBCkgIAhABGAIiQL+/signature=="
PNG = b"\x89PNG\r\n\x1a\n\xfb\xff\xfe"


class Upstream:
    """The answers the SDK gets, in order, and the requests it sent (URL and JSON body)."""

    def __init__(self, *answers: tuple[int, str, bytes]) -> None:
        self.answers = list(answers)
        self.requests: list[tuple[str, dict[str, Any]]] = []

    def handler(self, request: Any) -> Any:
        body = orjson.loads(request.content) if request.content else {}
        self.requests.append((str(request.url), body))
        status, content_type, content = self.answers.pop(0)
        return http.Response(status, headers={"content-type": content_type}, content=content)

    def client(self) -> Any:
        transport = http.MockTransport(self.handler)
        options = types.HttpOptions(
            base_url="http://proxy.test",
            httpx_client=http.Client(transport=transport),
            httpx_async_client=http.AsyncClient(transport=transport),
        )
        return genai.Client(api_key="test", http_options=options)


def answer(message: dict[str, Any], call: GeminiClientCall) -> tuple[int, str, bytes]:
    return 200, "application/json", orjson.dumps(gemini_answer(message, call))


def stream(raw: bytes, call: GeminiClientCall) -> tuple[int, str, bytes]:
    translator = GeminiFromMessages(call)
    out = b"".join(translator.feed(raw[at : at + 7]) for at in range(0, len(raw), 7))
    out += translator.flush()
    check_gemini_stream(out)
    return 200, "text/event-stream", out


def message(*content: dict[str, Any], stop_reason: str = "end_turn") -> dict[str, Any]:
    return {
        "id": "msg_01",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-5",
        "content": list(content),
        "stop_reason": stop_reason,
        "usage": {"input_tokens": 10, "output_tokens": 5, "cache_read_input_tokens": 4},
    }


def get_weather(city: str) -> str:
    """The weather of a city."""
    return f"sunny in {city}"


def test_the_sdks_request_translates() -> None:
    upstream = Upstream(answer(message({"type": "text", "text": "ok"}), GeminiClientCall("m")))
    upstream.client().models.generate_content(
        model="claude-x",
        contents=[
            "Describe these.",
            types.Part.from_bytes(data=PNG, mime_type="image/png"),
            types.Part.from_uri(file_uri="https://x.test/a.pdf", mime_type="application/pdf"),
        ],
        config=types.GenerateContentConfig(
            system_instruction="Be brief.",
            max_output_tokens=500,
            stop_sequences=["END"],
            thinking_config=types.ThinkingConfig(thinking_budget=2048, include_thoughts=True),
            tools=[
                get_weather,
                types.Tool(
                    function_declarations=[
                        types.FunctionDeclaration(
                            name="find",
                            parameters=types.Schema(
                                type=types.Type.OBJECT,
                                properties={
                                    "q": types.Schema(type=types.Type.STRING, nullable=True)
                                },
                                required=["q"],
                            ),
                        )
                    ]
                ),
            ],
            tool_config=types.ToolConfig(
                function_calling_config=types.FunctionCallingConfig(mode="AUTO")
            ),
            automatic_function_calling=types.AutomaticFunctionCallingConfig(disable=True),
        ),
    )
    url, sent = upstream.requests[0]
    assert url.endswith("/models/claude-x:generateContent")
    body, call = messages_from_gemini(sent, model="claude-x", stream=False)
    assert call.include_thoughts
    assert body["system"] == [{"type": "text", "text": "Be brief."}]
    assert body["messages"][0]["content"] == [
        {"type": "text", "text": "Describe these."},
        {
            "type": "image",
            "source": {
                "type": "base64",
                "media_type": "image/png",
                "data": base64.b64encode(PNG).decode(),  # the SDK sent it URL-safe
            },
        },
        {"type": "document", "source": {"type": "url", "url": "https://x.test/a.pdf"}},
    ]
    assert body["thinking"] == {"type": "enabled", "budget_tokens": 2048}
    assert body["max_tokens"] == 2048 + 500  # the budget, and the room asked for
    assert body["stop_sequences"] == ["END"]
    assert body["tools"][0]["name"] == "get_weather"
    assert body["tools"][0]["input_schema"]["properties"] == {"city": {"type": "string"}}
    assert body["tools"][1]["input_schema"] == {
        "type": "object",
        "properties": {"q": {"type": ["string", "null"]}},
        "required": ["q"],
    }
    assert body["tool_choice"] == {"type": "auto"}


def test_the_sdk_reads_the_answer() -> None:
    call = GeminiClientCall(model="claude-x", include_thoughts=True)
    reply = message(
        {"type": "thinking", "thinking": "Hmm.", "signature": SIGNATURE},
        {"type": "text", "text": "Checking."},
        {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Oslo"}},
        stop_reason="tool_use",
    )
    upstream = Upstream(answer(reply, call))
    response = upstream.client().models.generate_content(model="claude-x", contents="Oslo?")
    assert response.text == "Checking."
    assert response.function_calls[0].id == "toolu_1"
    assert response.function_calls[0].args == {"city": "Oslo"}
    candidate = response.candidates[0]
    assert candidate.finish_reason == types.FinishReason.STOP
    thought = candidate.content.parts[0]
    assert (thought.thought, thought.text) == (True, "Hmm.")
    assert thought.thought_signature == SIGNATURE.encode()
    usage = response.usage_metadata
    assert (usage.prompt_token_count, usage.candidates_token_count) == (14, 5)
    assert (usage.total_token_count, usage.cached_content_token_count) == (19, 4)
    assert (response.model_version, response.response_id) == ("claude-x", "01")


def test_the_sdk_reads_the_stream() -> None:
    call = GeminiClientCall(model="claude-x", stream=True)
    raw = (
        start()
        + text_block(0, "Let me ", "check.")
        + tool_block(1, "toolu_1", "get_weather", '{"city":', ' "Oslo"}')
        + end("max_tokens")
    )
    upstream = Upstream(stream(raw, call))
    chunks = list(
        upstream.client().models.generate_content_stream(model="claude-x", contents="Oslo?")
    )
    assert upstream.requests[0][0].endswith("/models/claude-x:streamGenerateContent?alt=sse")
    assert "".join(chunk.text or "" for chunk in chunks) == "Let me check."
    calls = [call for chunk in chunks for call in chunk.function_calls or []]
    assert [(call.id, call.name, call.args) for call in calls] == [
        ("toolu_1", "get_weather", {"city": "Oslo"})
    ]
    last = chunks[-1]
    assert last.candidates[0].finish_reason == types.FinishReason.MAX_TOKENS
    assert last.usage_metadata.total_token_count == 17


async def test_the_async_sdk_reads_the_stream_and_its_error() -> None:
    call = GeminiClientCall(model="claude-x", stream=True)
    error = event("error", error={"type": "rate_limit_error", "message": "Slow down"})
    upstream = Upstream(stream(start() + text_block(0, "Hi", " there") + error, call))
    chunks = await upstream.client().aio.models.generate_content_stream(
        model="claude-x", contents="hi"
    )
    texts = [(await anext(chunks)).text, (await anext(chunks)).text]
    with pytest.raises(errors.ClientError) as caught:
        await anext(chunks)
    assert texts == ["Hi", " there"]
    assert (caught.value.code, caught.value.status) == (429, "RESOURCE_EXHAUSTED")


def test_an_error_mid_stream_is_raised_by_the_sdks_iterator() -> None:
    call = GeminiClientCall(model="claude-x", stream=True)
    error = event("error", error={"type": "overloaded_error", "message": "Overloaded"})
    upstream = Upstream(stream(start() + text_block(0, "partial") + error, call))
    chunks = upstream.client().models.generate_content_stream(model="claude-x", contents="hi")
    assert next(chunks).text == "partial"
    with pytest.raises(errors.ServerError) as caught:
        next(chunks)
    assert (caught.value.code, caught.value.status) == (529, "UNAVAILABLE")
    assert caught.value.message == "Overloaded"


def test_an_error_answer_is_raised_with_its_status() -> None:
    upstream = Upstream((429, "application/json", gemini_error(429, "Slow down")))
    with pytest.raises(errors.ClientError) as caught:
        upstream.client().models.generate_content(model="claude-x", contents="hi")
    assert (caught.value.code, caught.value.status) == (429, "RESOURCE_EXHAUSTED")
    assert caught.value.message == "Slow down"


def test_the_sdk_fails_on_an_sse_comment_so_pings_say_nothing() -> None:
    call = GeminiClientCall(model="claude-x", stream=True)
    status, kind, out = stream(start() + text_block(0, "a") + end(), call)
    upstream = Upstream((status, kind, b": ping\r\n\r\n" + out))
    with pytest.raises(errors.UnknownApiResponseError):
        list(upstream.client().models.generate_content_stream(model="claude-x", contents="hi"))


def test_a_streamed_chat_keeps_its_signed_thinking_and_call_ids() -> None:
    """The SDK's chat records each streamed chunk's content as history (only when every chunk
    holds a part) and sends it back: its thinking block, with the signature intact through the
    SDK's base64 decoding and URL-safe re-encoding, and the call its response answers."""
    call = GeminiClientCall(model="claude-x", stream=True, include_thoughts=True)
    raw = (
        start()
        + thinking_block(0, SIGNATURE, "I need ", "the weather.")
        + tool_block(1, "toolu_9", "get_weather", '{"city": "Oslo"}')
        + end("tool_use")
    )
    reply = message({"type": "text", "text": "Sunny."})
    upstream = Upstream(stream(raw, call), answer(reply, call))
    config = types.GenerateContentConfig(
        tools=[get_weather],
        automatic_function_calling=types.AutomaticFunctionCallingConfig(disable=True),
        thinking_config=types.ThinkingConfig(thinking_budget=4096, include_thoughts=True),
    )
    chat = upstream.client().chats.create(model="claude-x", config=config)
    chunks = list(chat.send_message_stream("Weather in Oslo?"))
    function_call = next(c for chunk in chunks for c in chunk.function_calls or [])
    result = types.Part.from_function_response(
        name=function_call.name, response={"result": "sunny"}
    )
    assert chat.send_message(result).text == "Sunny."
    body, _ = messages_from_gemini(upstream.requests[1][1], model="claude-x", stream=False)
    assert body["thinking"] == {"type": "enabled", "budget_tokens": 4096}
    assert body["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "Weather in Oslo?"}]},
        {
            "role": "assistant",
            "content": [
                {"type": "thinking", "thinking": "I need the weather.", "signature": SIGNATURE},
                {
                    "type": "tool_use",
                    "id": "toolu_9",
                    "name": "get_weather",
                    "input": {"city": "Oslo"},
                },
            ],
        },
        {
            "role": "user",
            "content": [
                {
                    "type": "tool_result",
                    "tool_use_id": "toolu_9",
                    "content": [{"type": "text", "text": "sunny"}],
                }
            ],
        },
    ]


def test_automatic_function_calling_pairs_responses_by_name() -> None:
    """The SDK runs the function itself and answers without the call's id."""
    call = GeminiClientCall(model="claude-x")
    first = message(
        {"type": "tool_use", "id": "toolu_7", "name": "get_weather", "input": {"city": "Rome"}},
        stop_reason="tool_use",
    )
    upstream = Upstream(
        answer(first, call), answer(message({"type": "text", "text": "Done."}), call)
    )
    config = types.GenerateContentConfig(tools=[get_weather])
    response = upstream.client().models.generate_content(
        model="claude-x", contents="Rome?", config=config
    )
    assert response.text == "Done."
    sent = upstream.requests[1][1]
    assert "id" not in sent["contents"][2]["parts"][0]["functionResponse"]
    body, _ = messages_from_gemini(sent, model="claude-x", stream=False)
    assert body["messages"][2]["content"] == [
        {
            "type": "tool_result",
            "tool_use_id": "toolu_7",
            "content": [{"type": "text", "text": "sunny in Rome"}],
        }
    ]


def test_the_sdk_pages_through_the_model_list() -> None:
    names = [f"claude-{number}" for number in range(5)]

    def pages() -> Iterator[tuple[int, str, bytes]]:
        for token in (None, "2", "4"):
            page = gemini_models(names, page_size=2, page_token=token)
            yield 200, "application/json", orjson.dumps(page)

    upstream = Upstream(*pages())
    listed = list(upstream.client().models.list(config={"page_size": 2}))
    assert [model.name for model in listed] == [f"models/{name}" for name in names]
    assert "generateContent" in listed[0].supported_actions
    assert [url.partition("?")[2] for url, _ in upstream.requests] == [
        "pageSize=2",
        "pageSize=2&pageToken=2",
        "pageSize=2&pageToken=4",
    ]


def test_the_sdk_gets_a_model() -> None:
    upstream = Upstream((200, "application/json", orjson.dumps(gemini_model("claude-x"))))
    model = upstream.client().models.get(model="claude-x")
    assert upstream.requests[0][0].endswith("/models/claude-x")
    assert (model.name, model.display_name) == ("models/claude-x", "claude-x")


def test_the_sdk_counts_tokens() -> None:
    upstream = Upstream(
        (200, "application/json", orjson.dumps(count_tokens_answer({"input_tokens": 9})))
    )
    counted = upstream.client().models.count_tokens(model="claude-x", contents="Hello there")
    assert counted.total_tokens == 9
    url, sent = upstream.requests[0]
    assert url.endswith("/models/claude-x:countTokens")
    assert count_tokens_request(sent, model="claude-x") == {
        "model": "claude-x",
        "messages": [{"role": "user", "content": [{"type": "text", "text": "Hello there"}]}],
    }


def test_the_sdk_parses_json_mode_answers_into_its_schema() -> None:
    class Colours(pydantic.BaseModel):
        colours: list[str]

    reply = message(
        {"type": "tool_use", "id": "t", "name": "json_answer", "input": {"colours": ["red"]}},
        stop_reason="tool_use",
    )
    first = Upstream(answer(reply, GeminiClientCall("claude-x", json_tool="json_answer")))
    config = types.GenerateContentConfig(
        response_mime_type="application/json", response_schema=Colours
    )
    response = first.client().models.generate_content(
        model="claude-x", contents="A colour?", config=config
    )
    assert response.parsed == Colours(colours=["red"])
    body, call = messages_from_gemini(first.requests[0][1], model="claude-x", stream=False)
    assert call.json_tool == "json_answer"
    assert body["tools"][0]["input_schema"]["properties"]["colours"]["type"] == "array"
