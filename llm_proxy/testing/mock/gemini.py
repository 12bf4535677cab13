"""Google's Gemini API as AI Studio serves it (the `google-genai` SDK with `http_options`'
`base_url` at the mock), its handlers shared with Vertex AI's Google models (`vertex`):

* `POST /v1beta/models/{model}:generateContent` (and under `/v1`, where google-genai 1.x+
  goes): a GenerateContentResponse
* `:streamGenerateContent?alt=sse`: `data: {GenerateContentResponse}\\r\\n\\r\\n` events, one
  per piece of the answer (as many text pieces as the chat mock's chunks, paced by the same
  knobs), the last with `finishReason` and the whole `usageMetadata`; without `alt=sse`, the
  same responses as one JSON array written piece by piece, as Google does
* `:countTokens` (`{"totalTokens": n}`, what the answer's `promptTokenCount` says),
  `:embedContent` and `:batchEmbedContents` (vectors derived from the text: the same text, the
  same vector), `GET /v1beta/models[/{model}]`

The key: any `x-goog-api-key` (or `?key=`); none is a 403 PERMISSION_DENIED. Every error is in
Google's shape, `{"error": {"code", "message", "status"}}`.

The answer is the Messages mock's (`anthropic_answer.plan_answer`, on the request read as a
Messages request): `tok0 tok1 ...` (or `mock_content`), a `functionCall` of a declared function
when the request declares some and its last turn answers none (`toolConfig`'s mode NONE, ANY
and `allowedFunctionNames` obeyed; `--tool` as for Messages), the quoted `functionResponse`
after one, thought parts first when `thinkingConfig.includeThoughts` is set. Body knobs, as on
the other routes: `mock_chunks`, `mock_delay_ms`, `mock_content`, `mock_status`,
`mock_cache_read_tokens` (reported as `cachedContentTokenCount`)."""

from __future__ import annotations

import zlib
from typing import Any, Final

import orjson
from aiohttp import web

from llm_proxy.testing.mock.anthropic_answer import Answer, plan_answer
from llm_proxy.testing.mock.errors import MockError
from llm_proxy.testing.mock.state import OPTIONS, STATE
from llm_proxy.testing.mock.wire import record, send, stream_chunks, stream_delay

# Google's status name for each HTTP status (google.rpc.Code, as the REST mapping spells it).
STATUSES: Final = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ABORTED",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    501: "NOT_IMPLEMENTED",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
GENERATE: Final = "generateContent"
STREAM: Final = "streamGenerateContent"
COUNT: Final = "countTokens"
EMBED: Final = "embedContent"
BATCH_EMBED: Final = "batchEmbedContents"
EMBEDDING_SIZE: Final = 8  # values per vector without `outputDimensionality`
_MAX_EMBEDDING_SIZE: Final = 3072
_MODELS: Final = ("gemini-2.5-flash", "gemini-2.5-pro", "gemini-embedding-001")
_NO_KEY: Final = (
    "Method doesn't allow unregistered callers (callers without established identity). "
    "Please use API Key or other form of API consumer identity to call this API."
)


def google_error(status: int, message: str) -> MockError:
    status_name = STATUSES.get(status, "UNKNOWN")
    body = {"error": {"code": status, "message": message, "status": status_name}}
    return MockError(status, message, body=body)


def check_key(request: web.Request) -> None:
    """AI Studio's key: any, in `x-goog-api-key` or `?key=`."""
    if not request.headers.get("x-goog-api-key") and not request.query.get("key"):
        raise google_error(403, _NO_KEY)


async def read_body(request: web.Request) -> bytes:
    """The body, recorded first (a refused request too)."""
    body = await request.read()
    record(request, body)
    return body


def parse(body: bytes) -> dict[str, Any]:
    """The JSON object of a request; Google's 400, or the error `mock_status` asks for."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        data = None
    if not isinstance(data, dict):
        raise google_error(400, "Invalid JSON payload received. Expected an object.")
    if "mock_status" in data:
        status = int(data["mock_status"])
        raise google_error(status, f"mock upstream error {status}")
    return data


def split_call(call: str) -> tuple[str, str]:
    """`gemini-2.5-flash:generateContent` -> the model and the method."""
    model, _, method = call.rpartition(":")
    if not model:
        raise google_error(404, f"Method not found: {call!r}.")
    return model, method


# The request, read as a Messages request


def _contents(data: dict[str, Any]) -> list[dict[str, Any]]:
    """The turns, checked as Google checks them (400 INVALID_ARGUMENT)."""
    contents = data.get("contents")
    if not isinstance(contents, list) or not contents:
        raise google_error(400, "* GenerateContentRequest.contents: contents is not specified")
    for index, content in enumerate(contents):
        parts = content.get("parts") if isinstance(content, dict) else None
        if not isinstance(parts, list) or not parts:
            raise google_error(
                400, f"* GenerateContentRequest.contents[{index}].parts: contents.parts must "
                "not be empty."
            )  # fmt: skip
        if content.get("role", "user") not in ("user", "model", "function"):
            raise google_error(400, "Please use a valid role: user, model.")
    return contents


def _response_text(response: Any) -> str:
    """A `functionResponse`'s `response` as text: its only value when that is a string."""
    if isinstance(response, dict) and len(response) == 1:
        (value,) = response.values()
        if isinstance(value, str):
            return value
    return orjson.dumps(response).decode()


def _last_turn(content: dict[str, Any]) -> dict[str, Any]:
    """The last turn as a Messages turn: its function responses as `tool_result` blocks."""
    blocks = [
        {"type": "tool_result", "content": _response_text(part["functionResponse"].get("response"))}
        for part in content["parts"]
        if isinstance(part, dict) and isinstance(part.get("functionResponse"), dict)
    ]
    return {"role": "user", "content": blocks or "..."}


def _schema(schema: Any) -> Any:
    """An OpenAPI-subset schema (`"type": "OBJECT"`) with JSON Schema's lower-case types."""
    if isinstance(schema, list):
        return [_schema(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {key: _schema(value) for key, value in schema.items()}
    if isinstance(out.get("type"), str):
        out["type"] = out["type"].lower()
    return out


def _tools(data: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        {
            "name": declaration["name"],
            "input_schema": declaration.get("parametersJsonSchema")
            or _schema(declaration.get("parameters")),
        }
        for tool in data.get("tools") or []
        if isinstance(tool, dict)
        for declaration in tool.get("functionDeclarations") or []
        if isinstance(declaration, dict) and isinstance(declaration.get("name"), str)
    ]


def _tool_choice(data: dict[str, Any]) -> dict[str, Any] | None:
    config = (data.get("toolConfig") or {}).get("functionCallingConfig") or {}
    mode, allowed = config.get("mode"), config.get("allowedFunctionNames") or []
    if mode == "NONE":
        return {"type": "none"}
    if mode == "ANY" and len(allowed) == 1:
        return {"type": "tool", "name": allowed[0]}
    return {"type": "any"} if mode == "ANY" else None


def prompt_tokens(data: dict[str, Any]) -> int:
    """The mock's count of a request's tokens: the bytes of the JSON of its system
    instruction, contents and tools, over 4, at least 1 (`countTokens` and the answer's
    `promptTokenCount`)."""
    counted = [data.get("systemInstruction"), data.get("contents"), data.get("tools")]
    return max(1, len(orjson.dumps(counted)) // 4)


def plan(data: dict[str, Any], model: str, response_id: str, chunks: int, tool: str) -> Answer:
    """The answer to a generateContent request `data` (see the module's docstring)."""
    contents = _contents(data)
    thinking_config = (data.get("generationConfig") or {}).get("thinkingConfig") or {}
    # Google reads proto JSON, which takes either spelling (google-genai sends this one so).
    thinking = thinking_config.get("includeThoughts") or thinking_config.get("include_thoughts")
    pivot: dict[str, Any] = {
        "model": model,
        "messages": [_last_turn(contents[-1])],
        "tools": _tools(data),
        "tool_choice": _tool_choice(data),
        "thinking": {"type": "adaptive"} if thinking else None,
        "mock_content": data.get("mock_content"),
        "mock_cache_read_tokens": data.get("mock_cache_read_tokens", 0),
    }
    answer = plan_answer(pivot, response_id, chunks, tool)
    return Answer(
        message_id=answer.message_id,
        model=model,
        text=answer.text,
        thinking=answer.thinking,
        tool_use=answer.tool_use,
        input_tokens=prompt_tokens(data),
        cache_read_tokens=answer.cache_read_tokens,
    )


# The answer, as Google writes it


def usage(answer: Answer) -> dict[str, int]:
    """`promptTokenCount` includes the cached tokens; thoughts are counted apart from the
    candidates (one token per stream piece, as the Messages mock counts)."""
    prompt = answer.input_tokens + answer.cache_read_tokens
    thoughts = len(answer.thinking)
    candidates = answer.output_tokens - thoughts
    counts = {
        "promptTokenCount": prompt,
        "candidatesTokenCount": candidates,
        "totalTokenCount": prompt + candidates + thoughts,
    }
    if thoughts:
        counts["thoughtsTokenCount"] = thoughts
    if answer.cache_read_tokens:
        counts["cachedContentTokenCount"] = answer.cache_read_tokens
    return counts


def _function_call(answer: Answer) -> dict[str, Any]:
    assert answer.tool_use is not None
    return {"functionCall": {"name": answer.tool_use.name, "args": answer.tool_use.input}}


def _response(answer: Answer, parts: list[dict[str, Any]], last: bool) -> dict[str, Any]:
    candidate: dict[str, Any] = {"content": {"parts": parts, "role": "model"}, "index": 0}
    prompt = answer.input_tokens + answer.cache_read_tokens
    if last:
        candidate["finishReason"] = "STOP"
    return {
        "candidates": [candidate],
        # Before the last piece, Google reports the prompt only.
        "usageMetadata": usage(answer)
        if last
        else {"promptTokenCount": prompt, "totalTokenCount": prompt},
        "modelVersion": answer.model,
        "responseId": answer.message_id,
    }


def response(answer: Answer) -> dict[str, Any]:
    """The answer as one GenerateContentResponse."""
    parts: list[dict[str, Any]] = []
    if answer.thinking:
        parts.append({"text": "".join(answer.thinking), "thought": True})
    if answer.text:
        parts.append({"text": "".join(answer.text)})
    if answer.tool_use is not None:
        parts.append(_function_call(answer))
    return _response(answer, parts, last=True)


def stream_responses(answer: Answer) -> list[dict[str, Any]]:
    """The answer's stream, one GenerateContentResponse per piece: the thought pieces, the
    text pieces, the function call whole (Gemini does not stream arguments); the last one
    finished."""
    parts = [{"text": piece, "thought": True} for piece in answer.thinking]
    parts += [{"text": piece} for piece in answer.text]
    if answer.tool_use is not None:
        parts.append(_function_call(answer))
    return [_response(answer, [part], index == len(parts) - 1) for index, part in enumerate(parts)]


def sse_events(answer: Answer) -> list[bytes]:
    """The exact bytes of the answer's `alt=sse` stream."""
    return [b"data: " + orjson.dumps(item) + b"\r\n\r\n" for item in stream_responses(answer)]


def _array_pieces(answer: Answer) -> list[bytes]:
    """The stream without `alt=sse`: one JSON array, an element per write."""
    items = [orjson.dumps(item) for item in stream_responses(answer)]
    return [b"[" + items[0], *(b",\r\n" + item for item in items[1:]), b"]"]


# Embeddings


def _text(content: Any) -> str:
    parts = content.get("parts") if isinstance(content, dict) else None
    if not isinstance(parts, list) or not parts:
        raise google_error(400, "* EmbedContentRequest.content: content is not specified")
    return "".join(str(part.get("text", "")) for part in parts if isinstance(part, dict))


def embedding(text: str, size: int | None = None) -> list[float]:
    """A deterministic unit-range vector of `text` (`size` values, default
    `EMBEDDING_SIZE`)."""
    seed = zlib.crc32(text.encode())
    count = max(1, min(size or EMBEDDING_SIZE, _MAX_EMBEDDING_SIZE))
    return [round(((seed * (2 * j + 1)) % 2001 - 1000) / 1000, 3) for j in range(count)]


def _embed(data: dict[str, Any]) -> dict[str, Any]:
    return {"values": embedding(_text(data.get("content")), data.get("outputDimensionality"))}


# Handlers


async def answer(request: web.Request, body: bytes, model: str, method: str) -> web.StreamResponse:
    """`method` of `model` for an authorized request (AI Studio's or Vertex's)."""
    data = parse(body)
    if method in (GENERATE, STREAM):
        options, state = request.app[OPTIONS], request.app[STATE]
        chunks = stream_chunks(request, data)
        planned = plan(data, model, state.new_id("resp-"), chunks, options.tool)
        if method == GENERATE:
            return json_answer(response(planned))
        delay = stream_delay(request, data)
        if request.query.get("alt") == "sse":
            return await send(request, "text/event-stream", sse_events(planned), delay)
        return await send(request, "application/json", _array_pieces(planned), delay)
    if method == COUNT:
        counted = data.get("generateContentRequest") or data
        _contents(counted)
        return json_answer({"totalTokens": prompt_tokens(counted)})
    if method == EMBED:
        return json_answer({"embedding": _embed(data)})
    if method == BATCH_EMBED:
        requests = data.get("requests")
        if not isinstance(requests, list) or not requests:
            raise google_error(400, "* BatchEmbedContentsRequest.requests: requests is empty")
        return json_answer({"embeddings": [_embed(r) for r in requests if isinstance(r, dict)]})
    raise google_error(404, f"Method not found: {method!r}.")


def json_answer(obj: Any) -> web.Response:
    return web.Response(body=orjson.dumps(obj), content_type="application/json")


async def call(request: web.Request) -> web.StreamResponse:
    """`POST /v1beta/models/{model}:{method}` (or under `/v1`)."""
    body = await read_body(request)
    check_key(request)
    model, method = split_call(request.match_info["call"])
    return await answer(request, body, model, method)


def _model(name: str) -> dict[str, Any]:
    embeds = "embedding" in name
    methods = ["embedContent", "batchEmbedContents"] if embeds else [GENERATE, COUNT]
    return {
        "name": f"models/{name}",
        "version": "001",
        "displayName": name,
        "inputTokenLimit": 1_048_576,
        "outputTokenLimit": 0 if embeds else 65_536,
        "supportedGenerationMethods": methods,
    }


async def models(request: web.Request) -> web.Response:
    """`GET /v1beta/models`: the mock's three models."""
    record(request, b"")
    check_key(request)
    return json_answer({"models": [_model(name) for name in _MODELS]})


async def model(request: web.Request) -> web.Response:
    """`GET /v1beta/models/{model}`: any name is a model."""
    record(request, b"")
    check_key(request)
    return json_answer(_model(request.match_info["model"]))


ROUTES: Final = (
    ("POST", "/v1beta/models/{call}", call),
    ("POST", "/v1/models/{call}", call),
    ("GET", "/v1beta/models", models),
    ("GET", "/v1beta/models/{model}", model),
)
