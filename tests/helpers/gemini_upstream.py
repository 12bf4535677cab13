"""A fake Google AI Studio (Gemini API) on loopback, `FakeGemini`, and what it shares with the
fake Vertex AI (`tests.helpers.vertex_upstream`): Google's error shape, the checks Google makes
on a `GenerateContentRequest`, the deterministic answers (JSON and `alt=sse` streams) and the
knobs that make a request fail.

Routes, under `/v1beta/` and `/v1/`: `models/{model}:generateContent`, `:streamGenerateContent`
(`alt=sse` required), `:countTokens`, `:embedContent`, `:batchEmbedContents` (each request's
`model` must be `models/{model}`) and `GET models` (paged by pageSize/pageToken). The key is
`x-goog-api-key` or `?key=`: none is a 403 PERMISSION_DENIED, a wrong one a 400
INVALID_ARGUMENT with reason API_KEY_INVALID, as Google answers.

The checks are Google's: proto JSON (an unknown field anywhere is `Invalid JSON payload
received. Unknown name "x" at 'path': Cannot find field.`, camelCase or snake_case names),
contents non-empty, roles user/model only, one data field per part, a functionResponse turn
right after a functionCall turn with as many parts, and function parameters in Gemini's OpenAPI
subset (`additionalProperties`, `$ref`, `const`... refused; `parametersJsonSchema` takes any
JSON Schema). This is what catches a translator that forgets to convert.

The answers: "You said: <last user text>" (split across `chunks` SSE events, the last with
finishReason STOP and the full usageMetadata); a functionCall of the first declared (or
allowed) function, its args built from the schema's required properties, when tools are
declared and the last turn is user text; JSON for responseMimeType application/json;
MAX_TOKENS past maxOutputTokens. With a thinkingConfig that thinks (includeThoughts, a non-zero
thinkingBudget or a thinkingLevel): thoughtsTokenCount (apart from candidatesTokenCount, as
Google counts), a thoughtSignature on the first answer part, and with includeThoughts a thought
part first. A token is a whitespace-separated word: counts are exact and easy to assert. With
`require_thought_signatures`, the current turn's functionCall parts (after the last user text)
must carry their thoughtSignature, as Gemini 3 requires.

Every request is recorded (`requests`: method, raw path, query, headers, JSON, Host header);
`wait_for_requests(n)` waits on a condition. Knobs, each consumed by the next requests:
`fail_next(n, status, message=...)`, `block_next(n, "prompt" | "response")`, `break_next(n)`
(an error event after the first chunk), and `hold()` (an event: answers wait for it before
their first byte).
"""

from __future__ import annotations

import asyncio
import base64
import re
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import Any, Final, Self

import orjson
from aiohttp import web

from tests.helpers import serve

KEY: Final = "AIza-fake-gemini-key"
MODELS: Final = ("gemini-2.5-flash", "gemini-2.5-pro", "gemini-embedding-001")
STATUS: Final = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
MESSAGES: Final = {
    429: "Resource has been exhausted (e.g. check quota).",
    500: "An internal error has occurred. Please retry or report in "
    "https://developers.generativeai.google/guide/troubleshooting",
    503: "The model is overloaded. Please try again later.",
    504: "Deadline expired before operation could complete.",
}
SIGNATURE: Final = base64.b64encode(b"fake-thought-signature").decode()
SAFETY_RATINGS: Final = [
    {"category": "HARM_CATEGORY_DANGEROUS_CONTENT", "probability": "HIGH", "blocked": True}
]


@dataclass
class Received:
    method: str
    path: str  # as sent (percent-encoded), no query
    query: dict[str, str]
    headers: dict[str, str]
    json: Any  # None: no body, or not JSON
    raw: bytes
    host: str  # the Host header: which endpoint the client meant


def google_error(
    status: int, message: str, *, details: list[dict[str, Any]] | None = None
) -> web.Response:
    """Google's error body: `{"error": {"code", "message", "status", "details"?}}`."""
    error: dict[str, Any] = {"code": status, "message": message, "status": STATUS[status]}
    if details:
        error["details"] = details
    return web.json_response({"error": error}, status=status)


class BadRequest(Exception):
    """A request Google refuses: answered 400 INVALID_ARGUMENT."""

    def __init__(self, message: str, field: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.field = field

    def response(self) -> web.Response:
        details = None
        if self.field:
            violation = {"field": self.field, "description": self.message}
            details = [
                {
                    "@type": "type.googleapis.com/google.rpc.BadRequest",
                    "fieldViolations": [violation],
                }
            ]
        return google_error(400, self.message, details=details)


# The proto messages' fields (camelCase; snake_case is accepted too, as proto JSON does).
_REQUEST: Final = {"contents", "tools", "toolConfig", "safetySettings", "systemInstruction",
            "generationConfig", "cachedContent", "labels", "model"}  # fmt: skip
_GENERATION_CONFIG: Final = {
    "stopSequences", "responseMimeType", "responseSchema", "responseJsonSchema",
    "responseModalities", "candidateCount", "maxOutputTokens", "temperature", "topP", "topK",
    "seed", "presencePenalty", "frequencyPenalty", "responseLogprobs", "logprobs",
    "enableEnhancedCivicAnswers", "speechConfig", "thinkingConfig", "imageConfig",
    "mediaResolution",
}  # fmt: skip
_THINKING_CONFIG: Final = {"includeThoughts", "thinkingBudget", "thinkingLevel"}
_CONTENT: Final = {"role", "parts"}
_PART_DATA: Final = {"text", "inlineData", "functionCall", "functionResponse", "fileData",
              "executableCode", "codeExecutionResult"}  # fmt: skip
_PART: Final = _PART_DATA | {"thought", "thoughtSignature", "videoMetadata", "partMetadata"}
_FUNCTION_CALL: Final = {"id", "name", "args"}
_FUNCTION_RESPONSE: Final = {"id", "name", "response", "parts", "willContinue", "scheduling"}
_BLOB: Final = {"mimeType", "data"}
_FILE_DATA: Final = {"mimeType", "fileUri"}
_TOOL: Final = {"functionDeclarations", "googleSearch", "googleSearchRetrieval", "codeExecution",
         "urlContext", "computerUse", "fileSearch", "googleMaps"}  # fmt: skip
_DECLARATION: Final = {"name", "description", "parameters", "parametersJsonSchema", "response",
                "responseJsonSchema", "behavior"}  # fmt: skip
_TOOL_CONFIG: Final = {"functionCallingConfig", "retrievalConfig"}
_CALLING_CONFIG: Final = {"mode", "allowedFunctionNames"}
_SAFETY_SETTING: Final = {"category", "threshold", "method"}
# Gemini's Schema: a subset of OpenAPI 3.0 (no additionalProperties, $ref, $defs, const, oneOf,
# allOf, not, type lists...).
_SCHEMA: Final = {"type", "format", "title", "description", "nullable", "enum", "maxItems",
           "minItems", "properties", "required", "minProperties", "maxProperties",
           "minLength", "maxLength", "pattern", "example", "anyOf", "propertyOrdering",
           "default", "items", "minimum", "maximum"}  # fmt: skip
_TYPES: Final = {
    "TYPE_UNSPECIFIED",
    "STRING",
    "NUMBER",
    "INTEGER",
    "BOOLEAN",
    "ARRAY",
    "OBJECT",
    "NULL",
}


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(word.capitalize() for word in rest)


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)([A-Z])", r"_\1", name).lower()


def _fields(node: Any, known: set[str], at: str) -> dict[str, Any]:
    """`node` as a message with fields named camelCase (whichever way they were sent);
    400 on an unknown field or a non-object."""
    if not isinstance(node, dict):
        where = f" at '{at}'" if at else ""
        raise BadRequest(f"Invalid JSON payload received. Expected an object{where}.", at)
    out = {}
    for name, value in node.items():
        camel = _camel(name)
        if camel not in known:
            where = f" at '{at}'" if at else ""
            raise BadRequest(
                f'Invalid JSON payload received. Unknown name "{name}"{where}: Cannot find field.',
                at,
            )
        out[camel] = value
    return out


def check_request(body: Any, *, role_required: bool = False) -> dict[str, Any]:
    """A GenerateContentRequest as Google checks it; the request with camelCase names (at the
    levels the answers read). Raises BadRequest."""
    request = _fields(body, _REQUEST, "")
    contents = request.get("contents")
    if not contents:
        raise BadRequest("* GenerateContentRequest.contents: contents is not specified\n")
    if not isinstance(contents, list):
        raise BadRequest("Invalid JSON payload received. Expected a list at 'contents'.")
    request["contents"] = [
        _content(c, f"contents[{i}]", role_required) for i, c in enumerate(contents)
    ]
    _turn_order(request["contents"])
    if "systemInstruction" in request:
        request["systemInstruction"] = _content(
            request["systemInstruction"], "system_instruction", False
        )
    config = _fields(request.get("generationConfig", {}), _GENERATION_CONFIG, "generation_config")
    if "thinkingConfig" in config:
        config["thinkingConfig"] = _fields(
            config["thinkingConfig"], _THINKING_CONFIG, "generation_config.thinking_config"
        )
    if "responseSchema" in config:
        _schema(config["responseSchema"], "generation_config.response_schema")
    request["generationConfig"] = config
    tools = request.get("tools", [])
    request["tools"] = [_tool(t, f"tools[{i}]") for i, t in enumerate(tools)]
    tool_config = _fields(request.get("toolConfig", {}), _TOOL_CONFIG, "tool_config")
    tool_config["functionCallingConfig"] = _fields(
        tool_config.get("functionCallingConfig", {}),
        _CALLING_CONFIG,
        "tool_config.function_calling_config",
    )
    request["toolConfig"] = tool_config
    for i, setting in enumerate(request.get("safetySettings", [])):
        _fields(setting, _SAFETY_SETTING, f"safety_settings[{i}]")
    return request


def _content(node: Any, at: str, role_required: bool) -> dict[str, Any]:
    content = _fields(node, _CONTENT, at)
    role = content.get("role")
    if (role or role_required) and role not in ("user", "model"):
        raise BadRequest("Please use a valid role: user, model.", f"{at}.role")
    parts = content.get("parts")
    if not parts or not isinstance(parts, list):
        raise BadRequest(
            f"* GenerateContentRequest.{at}.parts: contents.parts must not be empty.\n"
        )
    content["role"] = role or "user"
    content["parts"] = [_part(p, f"{at}.parts[{i}]") for i, p in enumerate(parts)]
    return content


def _part(node: Any, at: str) -> dict[str, Any]:
    part = _fields(node, _PART, at)
    # An empty string is an unset field in proto JSON: {"text": ""} has no data.
    data = [name for name in part if name in _PART_DATA and part[name] != ""]
    if len(data) > 1:
        raise BadRequest(
            f"Invalid JSON payload received. Oneof field 'data' is already set. Cannot set "
            f"'{_snake(data[1])}' at '{at}'.",
            at,
        )
    if not data:
        raise BadRequest(
            f"* GenerateContentRequest.{at}.data: required oneof field 'data' must have one "
            "initialized field\n",
            at,
        )
    if "functionCall" in part:
        part["functionCall"] = _fields(part["functionCall"], _FUNCTION_CALL, f"{at}.function_call")
        if not part["functionCall"].get("name"):
            raise BadRequest(
                f"* GenerateContentRequest.{at}.function_call.name: Name cannot be empty.\n"
            )
    if "functionResponse" in part:
        part["functionResponse"] = _fields(
            part["functionResponse"], _FUNCTION_RESPONSE, f"{at}.function_response"
        )
        if not part["functionResponse"].get("name"):
            raise BadRequest(
                f"* GenerateContentRequest.{at}.function_response.name: Name cannot be empty.\n"
            )
    if "inlineData" in part:
        _fields(part["inlineData"], _BLOB, f"{at}.inline_data")
    if "fileData" in part:
        _fields(part["fileData"], _FILE_DATA, f"{at}.file_data")
    return part


def _turn_order(contents: list[dict[str, Any]]) -> None:
    """A functionResponse turn comes right after the functionCall turn it answers, with as
    many functionResponse parts as there were functionCall parts."""
    for i, content in enumerate(contents):
        responses = sum(1 for p in content["parts"] if "functionResponse" in p)
        if not responses:
            continue
        before = contents[i - 1]["parts"] if i else []
        calls = sum(1 for p in before if "functionCall" in p)
        if not calls:
            raise BadRequest(
                "Please ensure that function response turn comes immediately after a function "
                "call turn."
            )
        if calls != responses:
            raise BadRequest(
                "Please ensure that the number of function response parts is equal to the "
                "number of function call parts of the function call turn."
            )


def _tool(node: Any, at: str) -> dict[str, Any]:
    tool = _fields(node, _TOOL, at)
    declarations = []
    for i, declaration in enumerate(tool.get("functionDeclarations", [])):
        where = f"{at}.function_declarations[{i}]"
        d = _fields(declaration, _DECLARATION, where)
        if not d.get("name") or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.:-]{0,63}", d["name"]):
            raise BadRequest(
                f"* GenerateContentRequest.{where}.name: Invalid function name. Must start "
                "with a letter or an underscore. Must be a-z, A-Z, 0-9, or contain "
                "underscores, dots, colons and dashes, with a maximum length of 64.\n"
            )
        if "parameters" in d and "parametersJsonSchema" in d:
            raise BadRequest(
                f"* GenerateContentRequest.{where}: parameters and parameters_json_schema are "
                "mutually exclusive.\n"
            )
        if "parameters" in d:
            _schema(d["parameters"], f"{where}.parameters")
        declarations.append(d)
    tool["functionDeclarations"] = declarations
    return tool


def _schema(node: Any, at: str) -> None:
    """Gemini's Schema (OpenAPI subset): unknown keys refused by name, `type` one enum value."""
    schema = _fields(node, _SCHEMA, at)
    kind = schema.get("type")
    if kind is not None and (not isinstance(kind, str) or kind.upper() not in _TYPES):
        raise BadRequest(
            f"Invalid JSON payload received. Invalid value at '{at}.type' "
            f"(type.googleapis.com/google.ai.generativelanguage.v1beta.Type), "
            f"{orjson.dumps(kind).decode()}",
            f"{at}.type",
        )
    properties = schema.get("properties", {})
    for i, (_, value) in enumerate(properties.items()):
        _schema(value, f"{at}.properties[{i}].value")
    if "items" in schema:
        _schema(schema["items"], f"{at}.items")
    for i, option in enumerate(schema.get("anyOf", [])):
        _schema(option, f"{at}.any_of[{i}]")


def words(text: str) -> int:
    """The fakes' tokens: whitespace-separated words."""
    return len(text.split())


def example(schema: Any) -> Any:
    """A value for a schema (Gemini's or JSON Schema): required properties only."""
    if not isinstance(schema, dict):
        return None
    if schema.get("enum"):
        return schema["enum"][0]
    options = schema.get("anyOf") or schema.get("oneOf")
    if options:
        return example(options[0])
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    kind = str(kind or ("object" if "properties" in schema else "string")).lower()
    if kind == "object":
        properties = schema.get("properties", {})
        return {name: example(properties.get(name)) for name in schema.get("required", [])}
    return {"string": "example", "integer": 1, "number": 1.5, "boolean": True, "array": []}.get(
        kind
    )


def _texts(content: dict[str, Any]) -> Iterator[str]:
    for part in content["parts"]:
        if isinstance(part.get("text"), str):
            yield part["text"]


def prompt_tokens(request: dict[str, Any]) -> int:
    """Words in every text part, 8 for any other part, 8 per declared function."""
    total = 0
    contents = list(request["contents"])
    if "systemInstruction" in request:
        contents.append(request["systemInstruction"])
    for content in contents:
        for part in content["parts"]:
            total += words(part["text"]) if "text" in part else 8
    declarations = sum(len(t["functionDeclarations"]) for t in request["tools"])
    return total + 8 * declarations


@dataclass
class Plan:
    """What a request is answered: the parts (thought first, then text or a function call)."""

    thought: str = ""
    text: str = ""
    call: dict[str, Any] | None = None
    finish: str = "STOP"
    thoughts_tokens: int = 0
    signature: bool = False

    @property
    def output_tokens(self) -> int:
        if self.call is not None:
            return words(orjson.dumps(self.call["args"]).decode()) + 1
        return words(self.text)


def plan(request: dict[str, Any], calls: int) -> Plan:
    """The deterministic answer to a checked request (`calls`: function calls answered so far,
    for the call ids)."""
    last = request["contents"][-1]
    said = " ".join(_texts(last)) if last["role"] == "user" else ""
    config = request["generationConfig"]
    thinking = config.get("thinkingConfig", {})
    budget = thinking.get("thinkingBudget")
    result = Plan()
    if (
        thinking.get("includeThoughts")
        or (budget is not None and budget != 0)
        or ("thinkingLevel" in thinking)
    ):
        thought = f"Thinking about: {said[:60]}".strip()
        result.thoughts_tokens = words(thought) + 2  # the model thinks whether it shows it or not
        result.signature = True
        if thinking.get("includeThoughts"):
            result.thought = thought
    declared = [d for t in request["tools"] for d in t["functionDeclarations"]]
    calling = request["toolConfig"]["functionCallingConfig"]
    allowed = calling.get("allowedFunctionNames") or [d["name"] for d in declared]
    candidates = [d for d in declared if d["name"] in allowed]
    if candidates and said and calling.get("mode", "AUTO").upper() != "NONE":
        declaration = candidates[0]
        schema = declaration.get("parametersJsonSchema", declaration.get("parameters"))
        args = example(schema) if schema is not None else {}
        result.call = {"id": f"call_{calls + 1}", "name": declaration["name"], "args": args}
        return result
    if said:
        text = f"You said: {said[:80]}"
    elif last["role"] == "model":  # a prefilled answer, continued
        text = "(continued)"
    else:
        results = [p["functionResponse"] for p in last["parts"] if "functionResponse" in p]
        text = "Result received: " + (
            orjson.dumps(results[0].get("response", {})).decode()[:80] if results else "ok"
        )
    if config.get("responseMimeType") == "application/json":
        schema = config.get("responseJsonSchema", config.get("responseSchema"))
        value = example(schema) if schema is not None else {"answer": text}
        text = orjson.dumps(value).decode()
    limit = config.get("maxOutputTokens")
    if isinstance(limit, int) and words(text) > limit:
        text = " ".join(text.split()[:limit])
        result.finish = "MAX_TOKENS"
    result.text = text
    return result


def usage(request: dict[str, Any], answer: Plan | None, *, vertex: bool) -> dict[str, Any]:
    """usageMetadata. `answer` None: an intermediate stream chunk (prompt counts only).
    promptTokenCount includes cachedContentTokenCount, and candidatesTokenCount excludes
    thoughtsTokenCount, as Google counts."""
    prompt = prompt_tokens(request)
    cached = 0
    if request.get("cachedContent"):
        cached = 32
        prompt += cached
    out: dict[str, Any] = {"promptTokenCount": prompt, "totalTokenCount": prompt}
    if answer is not None:
        out["candidatesTokenCount"] = answer.output_tokens
        out["totalTokenCount"] = prompt + answer.output_tokens + answer.thoughts_tokens
        if answer.thoughts_tokens:
            out["thoughtsTokenCount"] = answer.thoughts_tokens
    if cached:
        out["cachedContentTokenCount"] = cached
    out["promptTokensDetails"] = [{"modality": "TEXT", "tokenCount": prompt}]
    if vertex:
        out["trafficType"] = "ON_DEMAND"
    return out


def split(text: str, pieces: int) -> list[str]:
    """`text` cut into `pieces` (fewer if it is shorter), concatenating back to `text`."""
    pieces = max(1, min(pieces, len(text)))
    size = -(-len(text) // pieces)
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


@dataclass
class Knobs:
    """What the next requests do instead of answering normally (each consumed by one request)."""

    # (status, retry-after, message)
    failures: deque[tuple[int, str | None, str | None]] = field(default_factory=deque)
    blocks: deque[str] = field(default_factory=deque)  # "prompt" or "response"
    breaks: int = 0  # streams that end with an error event after their first chunk
    gate: asyncio.Event | None = None  # set: requests wait for it before their first byte


class GoogleFake:
    """What FakeGemini and FakeVertex share: the lifecycle (an async context manager serving
    on 127.0.0.1; `url`), the recorded requests, the knobs and the Gemini answers."""

    vertex = False

    def __init__(self, *, chunks: int = 3, require_thought_signatures: bool = False) -> None:
        self.chunks = chunks
        # Gemini 3: each functionCall part replayed in the history must carry the
        # thoughtSignature it came with.
        self.require_thought_signatures = require_thought_signatures
        self.requests: list[Received] = []
        self.knobs = Knobs()
        self.url = ""
        self._calls = 0
        self._arrived = asyncio.Condition()
        self._stack = AsyncExitStack()

    def app(self) -> web.Application:
        """The fake's routes (each fake has its own)."""
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        self.url = await self._stack.enter_async_context(serve(self.app()))
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.knobs.gate is not None:
            self.knobs.gate.set()  # let held handlers end before the server stops
        await self._stack.aclose()

    # Knobs.

    def fail_next(
        self,
        n: int = 1,
        status: int = 429,
        *,
        retry_after: str | None = None,
        message: str | None = None,
    ) -> None:
        """The next `n` model calls (generate, stream, count, embed; not the list) are answered
        `status` (429 RESOURCE_EXHAUSTED, 500 INTERNAL, 503 UNAVAILABLE...) in Google's shape;
        with `retry_after`, a Retry-After header; with `message`, that message (a 400 whose
        prompt is too long: `tests.helpers.refusals.GEMINI_CONTEXT`)."""
        self.knobs.failures.extend([(status, retry_after, message)] * n)

    def block_next(self, n: int = 1, where: str = "prompt") -> None:
        """The next `n` generations are blocked for safety: "prompt" (promptFeedback.
        blockReason SAFETY, no candidates) or "response" (finishReason SAFETY, no content;
        in a stream, after one text chunk)."""
        assert where in ("prompt", "response")
        self.knobs.blocks.extend([where] * n)

    def break_next(self, n: int = 1) -> None:
        """The next `n` streams send one chunk, then an error event (500 INTERNAL), then end."""
        self.knobs.breaks += n

    def hold(self) -> asyncio.Event:
        """Requests wait before their first byte until the returned event is set."""
        self.knobs.gate = asyncio.Event()
        return self.knobs.gate

    async def wait_for_requests(self, n: int, timeout: float = 5.0) -> list[Received]:
        """Wait until at least `n` requests arrived; all of them."""
        async with asyncio.timeout(timeout), self._arrived:
            await self._arrived.wait_for(lambda: len(self.requests) >= n)
        return self.requests

    # Shared request handling.

    async def record(self, request: web.Request) -> Received:
        raw = await request.read()
        try:
            data = orjson.loads(raw) if raw else None
        except orjson.JSONDecodeError:
            data = None
        received = Received(
            request.method,
            request.raw_path.partition("?")[0],
            dict(request.query),
            dict(request.headers),
            data,
            raw,
            request.headers.get("Host", ""),
        )
        async with self._arrived:
            self.requests.append(received)
            self._arrived.notify_all()
        return received

    async def scripted_failure(self) -> web.Response | None:
        """The knobs that apply before any answer: the gate, then a scripted failure."""
        if self.knobs.gate is not None:
            await self.knobs.gate.wait()
        if not self.knobs.failures:
            return None
        status, retry_after, message = self.knobs.failures.popleft()
        if message is None:
            message = MESSAGES.get(status, STATUS.get(status, "error"))
        response = google_error(status, message)
        if retry_after is not None:
            response.headers["Retry-After"] = retry_after
        return response

    def _signatures(self, request: dict[str, Any]) -> None:
        """Gemini 3 checks the function calls of the current turn: those after the last user
        text."""
        if not self.require_thought_signatures:
            return
        contents = request["contents"]
        start = max(
            (i for i, c in enumerate(contents) if c["role"] == "user" and any(_texts(c))),
            default=0,
        )
        for i, content in enumerate(contents[start:], start):
            for j, part in enumerate(content["parts"]):
                if "functionCall" in part and not part.get("thoughtSignature"):
                    raise BadRequest(
                        f"Function call is missing a thought_signature in functionCall parts. "
                        f"This is required for tools to work correctly, and missing "
                        f"thought_signature may lead to degraded model performance. Additional "
                        f"data, function call `default_api:{part['functionCall']['name']}` , "
                        f"position {i + 1}. Please refer to "
                        f"https://ai.google.dev/gemini-api/docs/thought-signatures for more "
                        f"details.",
                        f"contents[{i}].parts[{j}]",
                    )

    async def generate(
        self, request: web.Request, received: Received, model: str, stream: bool
    ) -> web.StreamResponse:
        """generateContent / streamGenerateContent?alt=sse for a recorded request."""
        if stream and request.query.get("alt") != "sse":
            raise BadRequest("The fake streams only with alt=sse (JSON arrays are not served).")
        body = check_request(received.json, role_required=self.vertex)
        self._signatures(body)
        failure = await self.scripted_failure()
        if failure is not None:
            return failure
        block = self.knobs.blocks.popleft() if self.knobs.blocks else ""
        answer = plan(body, self._calls)
        if answer.call is not None:
            self._calls += 1
        envelope = {"modelVersion": model, "responseId": f"resp-{len(self.requests)}"}
        if self.vertex:
            envelope["createTime"] = "2026-01-01T00:00:00.000000Z"
        if block == "prompt":
            data = {
                "promptFeedback": {"blockReason": "SAFETY", "safetyRatings": SAFETY_RATINGS},
                "usageMetadata": usage(body, None, vertex=self.vertex),
                **envelope,
            }
            if stream:
                return await self._sse(request, [data], broken=False)
            return web.json_response(data)
        chunks = self._chunks(body, answer, block == "response", stream)
        if not stream:
            return web.json_response({**chunks[0], **envelope})
        broken = self.knobs.breaks > 0
        if broken:
            self.knobs.breaks -= 1
        return await self._sse(request, [{**c, **envelope} for c in chunks], broken=broken)

    def _chunks(
        self, body: dict[str, Any], answer: Plan, blocked: bool, stream: bool
    ) -> list[dict[str, Any]]:
        """The answer as GenerateContentResponses: one (not streamed) or several."""
        parts: list[dict[str, Any]] = []
        if answer.thought:
            parts.append({"text": answer.thought, "thought": True})
        if answer.call is not None:
            call: dict[str, Any] = {"functionCall": answer.call}
            if answer.signature:
                call["thoughtSignature"] = SIGNATURE
            parts.append(call)
        else:
            parts.extend(
                {"text": piece} for piece in split(answer.text, self.chunks if stream else 1)
            )
            if answer.signature:  # on the first part after the thoughts
                parts[1 if answer.thought else 0]["thoughtSignature"] = SIGNATURE
        final: dict[str, Any] = {"finishReason": answer.finish, "index": 0}
        if blocked:  # the response is cut: in a stream after one chunk, else before any
            parts = parts[:1] if stream else []
            final = {"finishReason": "SAFETY", "index": 0, "safetyRatings": SAFETY_RATINGS}
        vertex = self.vertex
        if not stream:
            candidate = {"content": {"parts": parts, "role": "model"}, **final} if parts else final
            return [
                {"candidates": [candidate], "usageMetadata": usage(body, answer, vertex=vertex)}
            ]
        out: list[dict[str, Any]] = [
            {
                "candidates": [{"content": {"parts": [part], "role": "model"}, "index": 0}],
                "usageMetadata": usage(body, None, vertex=vertex),
            }
            for part in parts
        ]
        if blocked:
            out.append({"candidates": [final], "usageMetadata": usage(body, answer, vertex=vertex)})
        else:
            out[-1]["candidates"][0].update(final)
            out[-1]["usageMetadata"] = usage(body, answer, vertex=vertex)
        return out

    async def _sse(
        self, request: web.Request, chunks: list[dict[str, Any]], *, broken: bool
    ) -> web.StreamResponse:
        out = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await out.prepare(request)
        for i, chunk in enumerate(chunks):
            await out.write(b"data: " + orjson.dumps(chunk) + b"\r\n\r\n")
            if broken and i == 0:
                error = {"code": 500, "message": MESSAGES[500], "status": "INTERNAL"}
                await out.write(b"data: " + orjson.dumps({"error": error}) + b"\r\n\r\n")
                break
        await out.write_eof()
        return out


def _model_info(model: str) -> dict[str, Any]:
    embedding = "embedding" in model
    return {
        "name": f"models/{model}",
        "version": "001",
        "displayName": model,
        "description": f"The fake's {model}",
        "inputTokenLimit": 2048 if embedding else 1048576,
        "outputTokenLimit": 1 if embedding else 65536,
        "supportedGenerationMethods": (
            ["embedContent", "countTextTokens", "countTokens"]
            if embedding
            else ["generateContent", "countTokens", "createCachedContent", "batchGenerateContent"]
        ),
        **({} if embedding else {"temperature": 1, "topP": 0.95, "topK": 64, "thinking": True}),
    }


def embedding(text: str, dimensions: int) -> list[float]:
    """A deterministic vector: the text's bytes, cycled and scaled into [0, 1)."""
    data = text.encode() or b"\0"
    return [data[i % len(data)] / 256 for i in range(dimensions)]


class FakeGemini(GoogleFake):
    """Google AI Studio's Gemini API (see the module docstring). `key`: the API key it takes;
    `models`: what `GET models` lists; `chunks`: text events per stream."""

    def __init__(
        self,
        *,
        key: str = KEY,
        models: tuple[str, ...] = MODELS,
        chunks: int = 3,
        dimensions: int = 8,
        require_thought_signatures: bool = False,
    ) -> None:
        super().__init__(chunks=chunks, require_thought_signatures=require_thought_signatures)
        self._key = key
        self.models = models
        self.dimensions = dimensions

    def __repr__(self) -> str:  # never the key
        return f"FakeGemini(url={self.url!r}, requests={len(self.requests)})"

    def app(self) -> web.Application:
        app = web.Application()
        for version in ("v1beta", "v1"):
            app.router.add_post(f"/{version}/models/{{call}}", self._call)
            app.router.add_get(f"/{version}/models", self._list)
        return app

    def _auth(self, request: web.Request) -> web.Response | None:
        key = request.headers.get("x-goog-api-key") or request.query.get("key")
        if not key:
            return google_error(
                403,
                "Method doesn't allow unregistered callers (callers without established "
                "identity). Please use API Key or other form of API consumer identity to call "
                "this API.",
            )
        if key != self._key:
            message = "API key not valid. Please pass a valid API key."
            return google_error(
                400,
                message,
                details=[
                    {
                        "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                        "reason": "API_KEY_INVALID",
                        "domain": "googleapis.com",
                        "metadata": {"service": "generativelanguage.googleapis.com"},
                    },
                    {
                        "@type": "type.googleapis.com/google.rpc.LocalizedMessage",
                        "locale": "en-US",
                        "message": message,
                    },
                ],
            )
        return None

    async def _list(self, request: web.Request) -> web.Response:
        await self.record(request)
        refused = self._auth(request)
        if refused is not None:
            return refused
        size = int(request.query.get("pageSize", 50))
        start = int(request.query.get("pageToken") or 0)
        page: dict[str, Any] = {
            "models": [_model_info(m) for m in self.models[start : start + size]]
        }
        if start + size < len(self.models):
            page["nextPageToken"] = str(start + size)
        return web.json_response(page)

    async def _call(self, request: web.Request) -> web.StreamResponse:
        received = await self.record(request)
        refused = self._auth(request)
        if refused is not None:
            return refused
        model, _, method = request.match_info["call"].partition(":")
        if model not in self.models:
            return google_error(
                404,
                f"models/{model} is not found for API version v1beta, or is not supported for "
                f"{method}. Call ListModels to see the list of available models and their "
                "supported methods.",
            )
        handlers: dict[str, Callable[[], Any]] = {
            "generateContent": lambda: self.generate(request, received, model, False),
            "streamGenerateContent": lambda: self.generate(request, received, model, True),
            "countTokens": lambda: self._count(received),
            "embedContent": lambda: self._embed(received, model),
            "batchEmbedContents": lambda: self._embed_batch(received, model),
        }
        if method not in handlers:
            return google_error(404, f"Method not found: {method}")
        try:
            result: web.StreamResponse = await handlers[method]()
        except BadRequest as exc:
            return exc.response()
        return result

    async def _count(self, received: Received) -> web.Response:
        body = _fields(received.json or {}, {"contents", "generateContentRequest"}, "")
        if "generateContentRequest" in body:
            request = check_request(body["generateContentRequest"])
        else:
            request = check_request({"contents": body.get("contents")})
        failure = await self.scripted_failure()
        if failure is not None:
            return failure
        total = prompt_tokens(request)
        return web.json_response(
            {
                "totalTokens": total,
                "promptTokensDetails": [{"modality": "TEXT", "tokenCount": total}],
            }
        )

    def _embed_one(self, node: Any, model: str, at: str) -> list[float]:
        known = {"model", "content", "taskType", "title", "outputDimensionality"}
        body = _fields(node, known, at)
        if body.get("model", f"models/{model}") != f"models/{model}":
            raise BadRequest(
                f"* BatchEmbedContentsRequest.{at}.model: unexpected model name format\n"
                if at
                else f"Model {body['model']!r} does not match the URL's models/{model}."
            )
        content = _content(body.get("content"), f"{at}.content" if at else "content", False)
        text = " ".join(_texts(content))
        return embedding(text, int(body.get("outputDimensionality") or self.dimensions))

    async def _embed(self, received: Received, model: str) -> web.Response:
        values = self._embed_one(received.json, model, "")
        failure = await self.scripted_failure()
        return failure or web.json_response({"embedding": {"values": values}})

    async def _embed_batch(self, received: Received, model: str) -> web.Response:
        body = _fields(received.json, {"requests"}, "")
        requests = body.get("requests")
        if not requests:
            raise BadRequest("* BatchEmbedContentsRequest.requests: requests is not specified\n")
        vectors = [
            {"values": self._embed_one(r, model, f"requests[{i}]")} for i, r in enumerate(requests)
        ]
        failure = await self.scripted_failure()
        return failure or web.json_response({"embeddings": vectors})
