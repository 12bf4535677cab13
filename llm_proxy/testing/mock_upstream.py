"""A fake OpenAI API for loopback use: offline demos (`llm-proxy mock-upstream`), the tests and
the benchmark. Deterministic output in OpenAI's shapes, as the official SDK reads them:

* chat and legacy completions (streamed or not), embeddings, `GET /v1/models`
* the Responses API: create (streamed as its named events), retrieve, delete, cancel, input
  items; a `previous_response_id` must name a response this instance stored
* images (generate; edit and variation as multipart), audio speech (bytes, streamed in chunks),
  transcriptions and translations (whose text reports the upload's size and SHA-256),
  moderations, and a Cohere/Jina-style `POST /v1/rerank`
* files (kept on disk in a temporary directory, bounded), batches, vector stores and their files

Each instance has a name (`MockOptions.name`, `--name`, default "mock"). Every id it makes
carries it (`resp_<name>`, `resp_<name>_2`, ...; likewise `file-`, `batch_`, `vs_`) and every
answer names it in `x-mock-instance`, so a test with two instances can tell which one owns an
object and which one answered. Unknown ids and paths get OpenAI's error shape.

Behaviour can be set per request through extra body fields (which also proves the proxy forwards
unknown fields):

* `mock_chunks`: number of content chunks in a stream (default: the server's `--chunks`)
* `mock_delay_ms`: delay between stream chunks (default: `--delay-ms`; speech: none)
* `mock_status`: answer with this HTTP status and an OpenAI-shaped error instead (also as a
  multipart form field)
* `mock_content`: the reply text for non-streaming calls
* `mock_bytes`: the size of a speech answer (default: `MockOptions.speech_bytes`)
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import re
import shutil
import struct
import tempfile
import time
import zlib
from collections import Counter, OrderedDict, deque
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Generic, TypeVar

import orjson
from aiohttp import BodyPartReader, web
from aiohttp.typedefs import Handler
from aiohttp_sse import sse_response
from multidict import CIMultiDict

_NAME: Final = re.compile(r"[A-Za-z0-9-]{1,40}")


@dataclass(frozen=True, slots=True)
class MockOptions:
    chunks: int = 20
    delay_ms: float = 0.0
    record: bool = False
    name: str = "mock"  # in every id this instance makes, and in `x-mock-instance`
    speech_bytes: int = 48_000  # size of a `/v1/audio/speech` answer without `mock_bytes`
    max_objects: int = 10_000  # remembered per kind (responses, files, batches, vector stores)
    max_file_bytes: int = 4 << 30  # uploaded bytes kept on disk; the oldest files go first

    def __post_init__(self) -> None:
        # `_` separates an id's counter, so a name without one keeps the owner readable.
        if not _NAME.fullmatch(self.name):
            raise ValueError(f"mock name {self.name!r}: letters, digits and '-', at most 40")


@dataclass(frozen=True, slots=True)
class Recorded:
    """One request as the mock received it. A JSON body is kept whole; a multipart body only as
    its size and `form` (the text fields, and per file part its field, filename, size and
    SHA-256); a request without a body has `body == b""`."""

    path: str
    headers: CIMultiDict[str]
    body: bytes
    method: str = "POST"
    size: int = 0
    form: dict[str, Any] | None = None


_CREATED: Final = 1_700_000_000
_CHUNK: Final = 1 << 16  # bytes read from (or written to) an upload at a time
_MAX_FIELD: Final = 1 << 20  # a multipart text field larger than this is refused


# -- Errors: raised anywhere, rendered in one place -----------------------------------------------


class MockError(Exception):
    """An answer in OpenAI's error shape; `_errors` renders it."""

    def __init__(
        self, status: int, message: str, *, param: str | None = None, code: str | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.body = {
            "error": {
                "message": message,
                "type": "server_error" if status >= 500 else "invalid_request_error",
                "param": param,
                "code": code,
            }
        }


def _forced(status: int) -> MockError:
    """The error a `mock_status` field asks for."""
    return MockError(status, f"mock upstream error {status}", code=f"mock_{status}")


def _not_found(what: str, object_id: str, param: str | None = None) -> MockError:
    return MockError(404, f"No {what} found with id '{object_id}'.", param=param)


def _missing(name: str) -> MockError:
    return MockError(
        400, f"Missing required parameter: '{name}'.", param=name, code="missing_required_parameter"
    )


@web.middleware
async def _errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every error the mock answers with, in OpenAI's shape: a `MockError`, and an unknown path
    or method (as OpenAI's `Invalid URL (POST /v1/nothing)`)."""
    try:
        return await handler(request)
    except MockError as e:
        error = e
    except (web.HTTPNotFound, web.HTTPMethodNotAllowed) as e:
        error = MockError(e.status, f"Invalid URL ({request.method} {request.path})")
    return web.json_response(
        error.body, status=error.status, dumps=lambda o: orjson.dumps(o).decode()
    )


# -- State: what one instance remembers -----------------------------------------------------------

T = TypeVar("T")


class _Objects(Generic[T]):
    """Objects by id, oldest first, at most `limit`: past it the oldest is forgotten (and
    `on_drop` frees what it held, as it does for a deleted one)."""

    def __init__(self, what: str, limit: int, on_drop: Callable[[T], None] | None = None) -> None:
        self.what = what
        self._limit = limit
        self._on_drop = on_drop
        self._items: OrderedDict[str, T] = OrderedDict()

    def __contains__(self, key: object) -> bool:
        return key in self._items

    def __len__(self) -> int:
        return len(self._items)

    def values(self) -> list[T]:
        return list(self._items.values())

    def add(self, key: str, item: T) -> None:
        self._items[key] = item
        while len(self._items) > self._limit:
            self.drop_oldest()

    def get(self, key: str) -> T:
        """The object, or OpenAI's 404."""
        try:
            return self._items[key]
        except KeyError:
            raise _not_found(self.what, key) from None

    def delete(self, key: str) -> T:
        item = self.get(key)
        del self._items[key]
        if self._on_drop is not None:
            self._on_drop(item)
        return item

    def drop_oldest(self) -> None:
        _, item = self._items.popitem(last=False)
        if self._on_drop is not None:
            self._on_drop(item)


@dataclass(frozen=True, slots=True)
class _StoredResponse:
    response: dict[str, Any]
    input_items: list[dict[str, Any]]


@dataclass(frozen=True, slots=True)
class _StoredFile:
    obj: dict[str, Any]
    path: Path
    lines: int  # requests in it, for a batch made from it


@dataclass(frozen=True, slots=True)
class _VectorStore:
    obj: dict[str, Any]
    files: dict[str, dict[str, Any]]


class MockState:
    """What one mock instance remembers, each kind bounded: its id counters, the responses,
    files, batches and vector stores it made. Uploaded files live on disk, in a temporary
    directory made on the first upload and removed when the app stops (`close`)."""

    def __init__(self, options: MockOptions) -> None:
        self.name = options.name
        self._max_file_bytes = options.max_file_bytes
        self._counts: Counter[str] = Counter()
        self._dir: Path | None = None
        self.file_bytes = 0
        limit = options.max_objects
        self.responses: _Objects[_StoredResponse] = _Objects("response", limit)
        self.files: _Objects[_StoredFile] = _Objects("file", limit, self._drop_file)
        self.batches: _Objects[dict[str, Any]] = _Objects("batch", limit)
        self.vector_stores: _Objects[_VectorStore] = _Objects("vector store", limit)

    def new_id(self, prefix: str) -> str:
        """`<prefix><name>`, then `<prefix><name>_2`, ...: the first id of a kind is the
        constant the mock has always answered with (`resp_mock`), which byte-exact stream tests
        compare against."""
        self._counts[prefix] += 1
        n = self._counts[prefix]
        return f"{prefix}{self.name}" if n == 1 else f"{prefix}{self.name}_{n}"

    def upload_path(self, file_id: str) -> Path:
        if self._dir is None:
            self._dir = Path(tempfile.mkdtemp(prefix=f"llm-proxy-mock-{self.name}-"))
        return self._dir / file_id

    def add_file(self, stored: _StoredFile) -> None:
        self.file_bytes += stored.obj["bytes"]
        self.files.add(stored.obj["id"], stored)
        while self.file_bytes > self._max_file_bytes and len(self.files) > 1:
            self.files.drop_oldest()

    def _drop_file(self, stored: _StoredFile) -> None:
        self.file_bytes -= stored.obj["bytes"]
        stored.path.unlink(missing_ok=True)

    def close(self) -> None:
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None


OPTIONS: Final = web.AppKey("mock_options", MockOptions)
RECORDED: Final = web.AppKey("mock_recorded", deque[Recorded])
STATE: Final = web.AppKey("mock_state", MockState)


# -- Reading requests, writing answers ------------------------------------------------------------


def _record(
    request: web.Request, body: bytes, size: int | None = None, form: dict[str, Any] | None = None
) -> None:
    if request.app[OPTIONS].record:
        request.app[RECORDED].append(
            Recorded(
                request.path,
                CIMultiDict(request.headers),
                body,
                request.method,
                len(body) if size is None else size,
                form,
            )
        )


async def _read(request: web.Request) -> dict[str, Any]:
    """The JSON body, recorded; a 400 for one that is not a JSON object, the error a
    `mock_status` field asks for."""
    body = await request.read()
    _record(request, body)
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        data = None
    if not isinstance(data, dict):
        raise MockError(400, "We could not parse the JSON body of your request.")
    if "mock_status" in data:
        raise _forced(int(data["mock_status"]))
    return data


def _required(data: dict[str, Any], name: str) -> Any:
    if data.get(name) is None:
        raise _missing(name)
    return data[name]


def _json(obj: Any) -> web.Response:
    return web.Response(
        body=orjson.dumps(obj),
        content_type="application/json",
        headers={"x-request-id": "req_mock"},
    )


def _page(
    request: web.Request, items: Iterable[dict[str, Any]], *, limit: int = 20, order: str = "desc"
) -> dict[str, Any]:
    """A cursor page of `items` (oldest first) as OpenAI lists: `limit`, `order`, `after`."""
    try:
        limit = max(1, min(int(request.query.get("limit", limit)), 10_000))
    except ValueError:
        raise MockError(400, "Invalid 'limit': expected an integer.", param="limit") from None
    seq = list(items)
    if request.query.get("order", order) == "desc":
        seq.reverse()
    if after := request.query.get("after"):
        ids = [item["id"] for item in seq]
        seq = seq[ids.index(after) + 1 :] if after in ids else []
    data = seq[:limit]
    return {
        "object": "list",
        "data": data,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
        "has_more": len(seq) > limit,
    }


async def _send(
    request: web.Request, content_type: str, pieces: Iterable[bytes], delay: float
) -> web.StreamResponse:
    """Write `pieces` as a chunked body, each its own write (so a relay is tested chunk by
    chunk), `delay` seconds apart."""
    resp = web.StreamResponse(headers={"Content-Type": content_type})
    await resp.prepare(request)
    try:
        for piece in pieces:
            await resp.write(piece)
            if delay:
                await asyncio.sleep(delay)
        await resp.write_eof()
    except ConnectionResetError:
        pass  # the client hung up (a proxy does when its own client does): not an error
    return resp


@dataclass(frozen=True, slots=True)
class Upload:
    """A file part of a multipart body, as read: never held whole in memory."""

    field: str
    filename: str
    size: int
    sha256: str
    lines: int


@dataclass(frozen=True, slots=True)
class _Form:
    fields: dict[str, str]  # a repeated name keeps its last value
    uploads: list[Upload]

    def field(self, name: str) -> str:
        if name not in self.fields:
            raise _missing(name)
        return self.fields[name]

    def upload(self, prefix: str) -> Upload:
        """The first file part whose name starts with `prefix` (`image` finds `image[]`)."""
        for upload in self.uploads:
            if upload.field.startswith(prefix):
                return upload
        raise _missing(prefix)


async def _read_form(request: web.Request, save: Path | None = None) -> _Form:
    """A multipart body, part by part: text fields whole (bounded), file parts in chunks, hashed
    (and the part named `file` written to `save`) as they arrive, so an upload of any size costs
    the mock one chunk of memory. Recorded as its size and a summary, never its bytes."""
    if request.content_type != "multipart/form-data":
        raise MockError(400, "Expected a multipart/form-data body.")
    reader = await request.multipart()
    fields: dict[str, str] = {}
    uploads: list[Upload] = []
    size = 0
    while (part := await reader.next()) is not None:
        if not isinstance(part, BodyPartReader) or part.name is None:
            raise MockError(400, "Every part of the form needs a name and no nested parts.")
        if part.filename is None:
            raw = await _read_field(part)
            size += len(raw)
            fields[part.name] = raw.decode(part.get_charset("utf-8"), errors="replace")
        else:
            upload = await _read_upload(part, part.filename, save if part.name == "file" else None)
            size += upload.size
            uploads.append(upload)
    summary = {
        "fields": fields,
        "files": [
            {"field": u.field, "filename": u.filename, "bytes": u.size, "sha256": u.sha256}
            for u in uploads
        ],
    }
    _record(request, b"", size, summary)
    if "mock_status" in fields:
        raise _forced(int(fields["mock_status"]))
    return _Form(fields, uploads)


async def _read_field(part: BodyPartReader) -> bytes:
    raw = bytearray()
    while chunk := await part.read_chunk(_CHUNK):
        raw += chunk
        if len(raw) > _MAX_FIELD:
            raise MockError(400, f"Form field '{part.name}' is too long.", param=part.name)
    return bytes(raw)


async def _read_upload(part: BodyPartReader, filename: str, save: Path | None) -> Upload:
    digest = hashlib.sha256()
    size = lines = 0
    last = b""
    out = await asyncio.to_thread(save.open, "wb") if save is not None else None
    try:
        while chunk := await part.read_chunk(_CHUNK):
            digest.update(chunk)
            size += len(chunk)
            lines += chunk.count(b"\n")
            last = chunk[-1:]
            if out is not None:
                await asyncio.to_thread(out.write, chunk)
    finally:
        if out is not None:
            out.close()
    if last not in (b"", b"\n"):
        lines += 1  # a last line without its newline
    return Upload(part.name or "", filename, size, digest.hexdigest(), lines)


def _seen(request: web.Request) -> str:
    """Record a request without a body; the `{id}` of its path."""
    _record(request, b"")
    return request.match_info.get("id", "")


# -- Chat, legacy completions, embeddings ---------------------------------------------------------


def stream_events(
    kind: str, model: str, chunks: int, include_usage: bool, name: str = "mock"
) -> list[bytes]:
    """The exact SSE bytes the mock (named `name`) sends for a stream (tests compare against
    these)."""
    rid = f"chatcmpl-{name}" if kind == "chat" else f"cmpl-{name}"
    events: list[dict[str, Any]] = []
    if kind == "chat":
        base = {"id": rid, "object": "chat.completion.chunk", "created": _CREATED, "model": model}
        events.append(
            {**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]}
        )
        for i in range(chunks):
            delta = {"content": f"tok{i} "}
            events.append(
                {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]}
            )
        events.append({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    else:
        base = {"id": rid, "object": "text_completion", "created": _CREATED, "model": model}
        for i in range(chunks):
            events.append(
                {
                    **base,
                    "choices": [
                        {"text": f"tok{i} ", "index": 0, "logprobs": None, "finish_reason": None}
                    ],
                }
            )
        events.append(
            {
                **base,
                "choices": [{"text": "", "index": 0, "logprobs": None, "finish_reason": "stop"}],
            }
        )
    if include_usage:
        # As OpenAI does: with include_usage every chunk carries "usage": null, and a final
        # chunk with no choices carries the usage.
        events = [{**e, "usage": None} for e in events]
        events.append({**base, "choices": [], "usage": _usage(5, chunks)})
    return [b"data: " + orjson.dumps(e) + b"\n\n" for e in events] + [b"data: [DONE]\n\n"]


def _usage(prompt: int, completion: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


def _delay(request: web.Request, data: dict[str, Any]) -> float:
    return float(data.get("mock_delay_ms", request.app[OPTIONS].delay_ms)) / 1000


def _chunks(request: web.Request, data: dict[str, Any]) -> int:
    return int(data.get("mock_chunks", request.app[OPTIONS].chunks))


async def chat(request: web.Request) -> web.StreamResponse:
    data = await _read(request)
    model = _required(data, "model")
    name = request.app[OPTIONS].name
    if data.get("stream"):
        include_usage = bool((data.get("stream_options") or {}).get("include_usage"))
        events = stream_events("chat", model, _chunks(request, data), include_usage, name)
        return await _send(request, "text/event-stream", events, _delay(request, data))
    content = data.get("mock_content", "Hello from the mock upstream.")
    return _json(
        {
            "id": f"chatcmpl-{name}",
            "object": "chat.completion",
            "created": _CREATED,
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": content},
                    "logprobs": None,
                    "finish_reason": "stop",
                }
            ],
            "usage": _usage(5, len(content.split())),
        }
    )


async def completions(request: web.Request) -> web.StreamResponse:
    data = await _read(request)
    model = _required(data, "model")
    name = request.app[OPTIONS].name
    if data.get("stream"):
        include_usage = bool((data.get("stream_options") or {}).get("include_usage"))
        events = stream_events("text", model, _chunks(request, data), include_usage, name)
        return await _send(request, "text/event-stream", events, _delay(request, data))
    text = data.get("mock_content", " a mock completion")
    return _json(
        {
            "id": f"cmpl-{name}",
            "object": "text_completion",
            "created": _CREATED,
            "model": model,
            "choices": [{"text": text, "index": 0, "logprobs": None, "finish_reason": "length"}],
            "usage": _usage(3, len(text.split())),
        }
    )


async def embeddings(request: web.Request) -> web.StreamResponse:
    data = await _read(request)
    model = _required(data, "model")
    inputs = data.get("input")
    items = inputs if isinstance(inputs, list) else [inputs]
    out = []
    for i, _ in enumerate(items):
        vector = [round(0.1 * (i + 1) + 0.01 * j, 4) for j in range(8)]
        embedding: Any = vector
        if data.get("encoding_format") == "base64":
            embedding = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
        out.append({"object": "embedding", "index": i, "embedding": embedding})
    return _json(
        {
            "object": "list",
            "data": out,
            "model": model,
            "usage": {"prompt_tokens": len(items), "total_tokens": len(items)},
        }
    )


# -- The Responses API ----------------------------------------------------------------------------


def _response(
    rid: str,
    model: str,
    status: str,
    output: list[dict[str, Any]],
    usage: dict[str, Any] | None,
    previous: str | None,
    store: bool,
) -> dict[str, Any]:
    """A Responses API `response` object (usage last, where OpenAI puts it near the end)."""
    return {
        "id": rid,
        "object": "response",
        "created_at": _CREATED,
        "status": status,
        "error": None,
        "incomplete_details": None,
        "model": model,
        "output": output,
        "parallel_tool_calls": True,
        "previous_response_id": previous,
        "store": store,
        "tool_choice": "auto",
        "tools": [],
        "usage": usage,
    }


def _message(item_id: str, text: str | None) -> dict[str, Any]:
    """The assistant message item: in progress and empty while `text` is None."""
    return {
        "type": "message",
        "id": item_id,
        "status": "in_progress" if text is None else "completed",
        "role": "assistant",
        "content": [] if text is None else [_text_part(text)],
    }


def _text_part(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": []}


def _response_usage(text: str) -> dict[str, Any]:
    output = len(text.split())
    return {
        "input_tokens": 4,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": output,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": 4 + output,
    }


def _message_id(response_id: str) -> str:
    return "msg_" + response_id.removeprefix("resp_")


def response_stream_events(
    model: str,
    chunks: int,
    response_id: str = "resp_mock",
    previous_response_id: str | None = None,
    store: bool = True,
) -> list[tuple[str, dict[str, Any]]]:
    """The (event type, data) pairs of a streamed Responses API call, in the order OpenAI sends
    them: the openai SDK's `responses.stream()` rebuilds the response from exactly these. The
    default id is that of the first response a mock named "mock" makes."""
    deltas = [f"tok{i} " for i in range(chunks)]
    text = "".join(deltas)
    msg = _message_id(response_id)

    def response(status: str, output: list[dict[str, Any]], usage: Any) -> dict[str, Any]:
        return _response(response_id, model, status, output, usage, previous_response_id, store)

    item = {"item_id": msg, "output_index": 0, "content_index": 0}
    events: list[tuple[str, dict[str, Any]]] = [
        ("response.created", {"response": response("in_progress", [], None)}),
        ("response.in_progress", {"response": response("in_progress", [], None)}),
        ("response.output_item.added", {"output_index": 0, "item": _message(msg, None)}),
        ("response.content_part.added", {**item, "part": _text_part("")}),
    ]
    events += [("response.output_text.delta", {**item, "delta": d, "logprobs": []}) for d in deltas]
    events += [
        ("response.output_text.done", {**item, "text": text, "logprobs": []}),
        ("response.content_part.done", {**item, "part": _text_part(text)}),
        ("response.output_item.done", {"output_index": 0, "item": _message(msg, text)}),
        (
            "response.completed",
            {"response": response("completed", [_message(msg, text)], _response_usage(text))},
        ),
    ]
    return [
        (kind, {"type": kind, "sequence_number": n, **data})
        for n, (kind, data) in enumerate(events)
    ]


def _input_items(value: Any, response_id: str) -> list[dict[str, Any]]:
    """A request's `input` as the items `input_items.list` answers with (each with an id)."""
    raw = [{"role": "user", "content": value}] if isinstance(value, str) else value
    items = []
    for i, entry in enumerate(raw if isinstance(raw, list) else []):
        if not isinstance(entry, dict):
            continue
        item = {"type": "message", **entry}
        if item["type"] == "message":
            if isinstance(item.get("content"), str):
                part = "output_text" if item.get("role") == "assistant" else "input_text"
                item["content"] = [{"type": part, "text": item["content"]}]
            item.setdefault("status", "completed")
        item.setdefault("id", f"{_message_id(response_id)}_in{i}")
        items.append(item)
    return items


async def _stream_response(
    request: web.Request, events: list[tuple[str, dict[str, Any]]], delay: float
) -> web.StreamResponse:
    # Named events, so aiohttp-sse writes them (`event:` and `data:` lines); chat and legacy
    # completions keep their pre-encoded `data:` bytes, which the tests and the benchmark need
    # byte for byte. OpenAI ends lines with a bare LF; so does the mock.
    async with sse_response(request, sep="\n", allow_all_methods=True) as resp:
        try:
            for kind, event in events:
                await resp.send(orjson.dumps(event).decode(), event=kind)
                if delay and kind == "response.output_text.delta":
                    await asyncio.sleep(delay)
        except ConnectionResetError:
            pass  # the client hung up: not an error
    return resp


async def responses(request: web.Request) -> web.StreamResponse:
    """Create a response. A `previous_response_id` this instance did not store (never made,
    deleted, forgotten, or made with `store: false`) is OpenAI's 400
    `previous_response_not_found`: a follow-up that lands on the wrong instance fails."""
    state = request.app[STATE]
    data = await _read(request)
    model = _required(data, "model")
    previous = data.get("previous_response_id")
    if previous is not None and previous not in state.responses:
        raise MockError(
            400,
            f"Previous response with id '{previous}' not found.",
            param="previous_response_id",
            code="previous_response_not_found",
        )
    rid = state.new_id("resp_")
    store = data.get("store") is not False
    events: list[tuple[str, dict[str, Any]]] = []
    if data.get("stream"):
        events = response_stream_events(model, _chunks(request, data), rid, previous, store)
        final = events[-1][1]["response"]
    else:
        text = data.get("mock_content", "Hello from the mock upstream.")
        output = [_message(_message_id(rid), text)]
        final = _response(rid, model, "completed", output, _response_usage(text), previous, store)
    if store:
        state.responses.add(rid, _StoredResponse(final, _input_items(data.get("input"), rid)))
    if events:
        return await _stream_response(request, events, _delay(request, data))
    return _json(final)


async def response_retrieve(request: web.Request) -> web.Response:
    return _json(request.app[STATE].responses.get(_seen(request)).response)


async def response_delete(request: web.Request) -> web.Response:
    rid = _seen(request)
    request.app[STATE].responses.delete(rid)
    return _json({"id": rid, "object": "response", "deleted": True})


async def response_cancel(request: web.Request) -> web.Response:
    request.app[STATE].responses.get(_seen(request))
    raise MockError(400, "Only responses created with background=true can be cancelled.")


async def response_input_items(request: web.Request) -> web.Response:
    stored = request.app[STATE].responses.get(_seen(request))
    return _json(_page(request, stored.input_items))


async def models(request: web.Request) -> web.Response:
    return _json(
        {
            "object": "list",
            "data": [{"id": "mock-model", "object": "model", "created": 0, "owned_by": "mock"}],
        }
    )


# -- Images ---------------------------------------------------------------------------------------


def _png() -> bytes:
    """A valid 1x1 RGBA PNG, built here rather than kept as an opaque blob."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + data))
        return struct.pack(">I", len(data)) + kind + data + crc

    header = struct.pack(">IIBBBBB", 1, 1, 8, 6, 0, 0, 0)
    pixels = zlib.compress(b"\x00\x10\xa3\x7f\xff")  # filter byte, then one RGBA pixel
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    )


PNG: Final = _png()


def _images(
    request: web.Request, model: str, n: Any, response_format: str | None
) -> dict[str, Any]:
    """An images answer: `url` items (pointing at this mock's `/mock/image.png`) or
    `b64_json` ones, by `response_format`, defaulting as OpenAI does (DALL-E: url; GPT image
    models: b64_json, with usage)."""
    try:
        count = int(n or 1)
    except ValueError:
        count = 0
    if not 1 <= count <= 10:
        raise MockError(400, f"Invalid 'n': {n!r}; expected 1 to 10.", param="n")
    dalle = model.startswith("dall-e")
    fmt = response_format or ("url" if dalle else "b64_json")
    if fmt == "url":
        item: dict[str, Any] = {"url": str(request.url.with_path("/mock/image.png"))}
    elif fmt == "b64_json":
        item = {"b64_json": base64.b64encode(PNG).decode()}
    else:
        raise MockError(400, f"Invalid 'response_format': {fmt!r}.", param="response_format")
    answer: dict[str, Any] = {"created": _CREATED, "data": [item] * count}
    if not dalle:
        answer["usage"] = {
            "input_tokens": 10,
            "input_tokens_details": {"image_tokens": 0, "text_tokens": 10},
            "output_tokens": 100 * count,
            "total_tokens": 10 + 100 * count,
        }
    return answer


async def image_generate(request: web.Request) -> web.Response:
    data = await _read(request)
    _required(data, "prompt")
    model = data.get("model") or "dall-e-2"
    return _json(_images(request, model, data.get("n"), data.get("response_format")))


async def image_edit(request: web.Request) -> web.Response:
    form = await _read_form(request)
    form.upload("image")
    form.field("prompt")
    model = form.fields.get("model", "dall-e-2")
    return _json(_images(request, model, form.fields.get("n"), form.fields.get("response_format")))


async def image_variation(request: web.Request) -> web.Response:
    form = await _read_form(request)
    form.upload("image")
    model = form.fields.get("model", "dall-e-2")
    return _json(_images(request, model, form.fields.get("n"), form.fields.get("response_format")))


async def image_file(request: web.Request) -> web.Response:
    return web.Response(body=PNG, content_type="image/png")


# -- Audio ----------------------------------------------------------------------------------------

_AUDIO_TYPES: Final = {
    "mp3": "audio/mpeg",
    "opus": "audio/opus",
    "aac": "audio/aac",
    "flac": "audio/flac",
    "wav": "audio/wav",
    "pcm": "audio/pcm",
}
_AUDIO_CHUNK: Final = 16_384
_AUDIO_PERIOD: Final = 251  # prime: no chunk boundary lines up with the pattern
_AUDIO_BLOCK: Final = bytes(i % _AUDIO_PERIOD for i in range(_AUDIO_PERIOD + _AUDIO_CHUNK))


def audio_chunks(size: int) -> Iterator[bytes]:
    """A speech answer of `size` bytes, in the chunks the mock writes it in: the byte cycle
    0, 1, ..., 250, 0, 1, ..."""
    for start in range(0, size, _AUDIO_CHUNK):
        offset = start % _AUDIO_PERIOD
        yield _AUDIO_BLOCK[offset : offset + min(_AUDIO_CHUNK, size - start)]


def audio_bytes(size: int) -> bytes:
    """The exact body of a speech answer of `size` bytes (tests compare against it)."""
    return b"".join(audio_chunks(size))


async def speech(request: web.Request) -> web.StreamResponse:
    """Audio bytes (`audio_bytes(size)`), streamed in 16 KiB chunks, `mock_delay_ms` apart;
    with `stream_format: sse`, the same bytes as `speech.audio.delta` events."""
    data = await _read(request)
    for name in ("model", "input", "voice"):
        _required(data, name)
    size = int(data.get("mock_bytes", request.app[OPTIONS].speech_bytes))
    delay = float(data.get("mock_delay_ms", 0)) / 1000
    fmt = data.get("response_format") or "mp3"
    if fmt not in _AUDIO_TYPES:
        raise MockError(400, f"Invalid 'response_format': {fmt!r}.", param="response_format")
    if data.get("stream_format") == "sse":
        usage = {"input_tokens": 5, "output_tokens": size // 1000, "total_tokens": 5 + size // 1000}
        events: list[dict[str, Any]] = [
            {"type": "speech.audio.delta", "audio": base64.b64encode(chunk).decode()}
            for chunk in audio_chunks(size)
        ]
        events.append({"type": "speech.audio.done", "usage": usage})
        pieces = [b"data: " + orjson.dumps(event) + b"\n\n" for event in events]
        return await _send(request, "text/event-stream", pieces, delay)
    return await _send(request, _AUDIO_TYPES[fmt], audio_chunks(size), delay)


async def _audio_text(request: web.Request, task: str) -> web.Response:
    """A transcription or translation whose text names the upload's filename, size and SHA-256,
    so a test can prove the bytes arrived unchanged; in every `response_format`."""
    form = await _read_form(request)
    upload = form.upload("file")
    form.field("model")
    text = f"mock {task} of {upload.filename}: {upload.size} bytes, sha256 {upload.sha256}"
    seconds = round(upload.size / 32_000, 3)  # as if 16 kHz 16-bit mono
    fmt = form.fields.get("response_format", "json")
    if fmt == "text":
        return web.Response(text=text + "\n", content_type="text/plain")
    if fmt == "srt":
        body = f"1\n00:00:00,000 --> 00:00:01,000\n{text}\n\n"
        return web.Response(text=body, content_type="text/plain")
    if fmt == "vtt":
        body = f"WEBVTT\n\n00:00:00.000 --> 00:00:01.000\n{text}\n\n"
        return web.Response(text=body, content_type="text/vtt")
    if fmt == "verbose_json":
        segment = {
            "id": 0,
            "seek": 0,
            "start": 0.0,
            "end": seconds,
            "text": text,
            "tokens": [1, 2, 3],
            "temperature": 0.0,
            "avg_logprob": -0.1,
            "compression_ratio": 1.0,
            "no_speech_prob": 0.0,
        }
        task_name = "transcribe" if task == "transcription" else "translate"
        verbose = {"task": task_name, "language": "english", "duration": seconds, "text": text}
        return _json({**verbose, "segments": [segment]})
    if fmt != "json":
        raise MockError(400, f"Invalid 'response_format': {fmt!r}.", param="response_format")
    if task == "translation":
        return _json({"text": text})
    return _json({"text": text, "usage": {"type": "duration", "seconds": seconds}})


async def transcriptions(request: web.Request) -> web.Response:
    return await _audio_text(request, "transcription")


async def translations(request: web.Request) -> web.Response:
    return await _audio_text(request, "translation")


# -- Moderations, rerank --------------------------------------------------------------------------

_CATEGORIES: Final = (
    "harassment",
    "harassment/threatening",
    "hate",
    "hate/threatening",
    "illicit",
    "illicit/violent",
    "self-harm",
    "self-harm/instructions",
    "self-harm/intent",
    "sexual",
    "sexual/minors",
    "violence",
    "violence/graphic",
)
FLAG: Final = "mock-flagged"  # an input containing this is flagged (for violence)


def _moderation(text: str) -> dict[str, Any]:
    flagged = FLAG in text
    return {
        "flagged": flagged,
        "categories": {c: flagged and c == "violence" for c in _CATEGORIES},
        "category_scores": {c: 0.99 if flagged and c == "violence" else 0.0 for c in _CATEGORIES},
        "category_applied_input_types": {c: ["text"] for c in _CATEGORIES},
    }


async def moderations(request: web.Request) -> web.Response:
    """One result per input string; a multimodal input list is one result."""
    data = await _read(request)
    value = _required(data, "input")
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        texts = value
    elif isinstance(value, list):
        texts = [" ".join(str(v.get("text", "")) for v in value if isinstance(v, dict))]
    else:
        texts = [str(value)]
    return _json(
        {
            "id": f"modr-{request.app[OPTIONS].name}",
            "model": data.get("model") or "omni-moderation-latest",
            "results": [_moderation(text) for text in texts],
        }
    )


async def rerank(request: web.Request) -> web.Response:
    """Cohere/Jina-style: documents scored by the query words they share, best first."""
    data = await _read(request)
    model = _required(data, "model")
    query = str(_required(data, "query"))
    documents = _required(data, "documents")
    if not isinstance(documents, list):
        raise MockError(400, "Invalid 'documents': expected a list.", param="documents")
    texts = [d.get("text", "") if isinstance(d, dict) else str(d) for d in documents]
    words = set(query.lower().split())
    scored = [
        (round((len(words & set(text.lower().split())) + 1) / (len(words) + 2), 4), i)
        for i, text in enumerate(texts)
    ]
    scored.sort(key=lambda pair: (-pair[0], pair[1]))
    top_n = data.get("top_n")
    results: list[dict[str, Any]] = []
    for score, i in scored[: int(top_n) if top_n is not None else None]:
        result: dict[str, Any] = {"index": i, "relevance_score": score}
        if data.get("return_documents"):
            result["document"] = {"text": texts[i]}
        results.append(result)
    tokens = len(query.split()) + sum(len(text.split()) for text in texts)
    return _json(
        {
            "id": f"rerank-{request.app[OPTIONS].name}",
            "model": model,
            "results": results,
            "usage": {"total_tokens": tokens},
            "meta": {"billed_units": {"search_units": 1}},
        }
    )


# -- Files ----------------------------------------------------------------------------------------


async def file_create(request: web.Request) -> web.Response:
    """Store the `file` part on disk (written as it arrives, never held in memory)."""
    state = request.app[STATE]
    file_id = state.new_id("file-")
    path = state.upload_path(file_id)
    try:
        form = await _read_form(request, save=path)
        upload = form.upload("file")
        purpose = form.field("purpose")
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    seconds = form.fields.get("expires_after[seconds]")
    obj = {
        "id": file_id,
        "object": "file",
        "bytes": upload.size,
        "created_at": _CREATED,
        "filename": upload.filename,
        "purpose": purpose,
        "status": "processed",
        "expires_at": _CREATED + int(seconds) if seconds else None,
        "status_details": None,
    }
    state.add_file(_StoredFile(obj, path, upload.lines))
    return _json(obj)


async def file_list(request: web.Request) -> web.Response:
    _seen(request)
    purpose = request.query.get("purpose")
    files = [f.obj for f in request.app[STATE].files.values()]
    return _json(
        _page(request, [f for f in files if purpose in (None, f["purpose"])], limit=10_000)
    )


async def file_retrieve(request: web.Request) -> web.Response:
    return _json(request.app[STATE].files.get(_seen(request)).obj)


async def file_delete(request: web.Request) -> web.Response:
    file_id = _seen(request)
    request.app[STATE].files.delete(file_id)
    return _json({"id": file_id, "object": "file", "deleted": True})


async def file_content(request: web.Request) -> web.FileResponse:
    stored = request.app[STATE].files.get(_seen(request))
    return web.FileResponse(stored.path, headers={"Content-Type": "application/octet-stream"})


# -- Batches --------------------------------------------------------------------------------------


async def batch_create(request: web.Request) -> web.Response:
    """A batch over a file this instance stored; it stays `validating` until cancelled."""
    state = request.app[STATE]
    data = await _read(request)
    file_id = _required(data, "input_file_id")
    endpoint = _required(data, "endpoint")
    window = _required(data, "completion_window")
    if file_id not in state.files:
        raise _not_found("file", file_id, param="input_file_id")
    batch = {
        "id": state.new_id("batch_"),
        "object": "batch",
        "endpoint": endpoint,
        "model": data.get("model"),
        "errors": None,
        "input_file_id": file_id,
        "completion_window": window,
        "status": "validating",
        "output_file_id": None,
        "error_file_id": None,
        "created_at": _CREATED,
        "in_progress_at": None,
        "expires_at": _CREATED + 86_400,
        "finalizing_at": None,
        "completed_at": None,
        "failed_at": None,
        "expired_at": None,
        "cancelling_at": None,
        "cancelled_at": None,
        "request_counts": {"total": state.files.get(file_id).lines, "completed": 0, "failed": 0},
        "metadata": data.get("metadata"),
    }
    state.batches.add(batch["id"], batch)
    return _json(batch)


async def batch_retrieve(request: web.Request) -> web.Response:
    return _json(request.app[STATE].batches.get(_seen(request)))


async def batch_list(request: web.Request) -> web.Response:
    _seen(request)
    return _json(_page(request, request.app[STATE].batches.values()))


async def batch_cancel(request: web.Request) -> web.Response:
    """Answers `cancelling` (as OpenAI does); later retrieves see `cancelled`."""
    batch = request.app[STATE].batches.get(_seen(request))
    if batch["status"] in ("cancelled", "completed", "failed", "expired"):
        return _json(batch)
    batch.update(status="cancelled", cancelling_at=_CREATED, cancelled_at=_CREATED)
    return _json({**batch, "status": "cancelling", "cancelled_at": None})


# -- Vector stores --------------------------------------------------------------------------------


def _vector_store(store: _VectorStore) -> dict[str, Any]:
    """The object, with its file counts and usage as of now."""
    counts = {"in_progress": 0, "completed": len(store.files), "failed": 0, "cancelled": 0}
    usage = sum(f["usage_bytes"] for f in store.files.values())
    return {**store.obj, "file_counts": {**counts, "total": len(store.files)}, "usage_bytes": usage}


def _attach(state: MockState, store: _VectorStore, file_id: str, data: dict[str, Any]) -> None:
    if file_id not in state.files:
        raise _not_found("file", file_id, param="file_id")
    store.files[file_id] = {
        "id": file_id,
        "object": "vector_store.file",
        "created_at": _CREATED,
        "usage_bytes": state.files.get(file_id).obj["bytes"],
        "vector_store_id": store.obj["id"],
        "status": "completed",
        "last_error": None,
        "attributes": data.get("attributes") or {},
        "chunking_strategy": {
            "type": "static",
            "static": {"max_chunk_size_tokens": 800, "chunk_overlap_tokens": 400},
        },
    }


async def vector_store_create(request: web.Request) -> web.Response:
    state = request.app[STATE]
    data = await _read(request)
    file_ids = data.get("file_ids") or []
    for file_id in file_ids:
        if file_id not in state.files:
            raise _not_found("file", file_id, param="file_ids")
    vs_id = state.new_id("vs_")
    store = _VectorStore(
        {
            "id": vs_id,
            "object": "vector_store",
            "created_at": _CREATED,
            "name": data.get("name") or "",
            "description": data.get("description"),
            "status": "completed",
            "expires_after": data.get("expires_after"),
            "expires_at": None,
            "last_active_at": _CREATED,
            "metadata": data.get("metadata") or {},
        },
        {},
    )
    for file_id in file_ids:
        _attach(state, store, file_id, {})
    state.vector_stores.add(vs_id, store)
    return _json(_vector_store(store))


async def vector_store_list(request: web.Request) -> web.Response:
    _seen(request)
    stores = request.app[STATE].vector_stores.values()
    return _json(_page(request, [_vector_store(s) for s in stores]))


async def vector_store_retrieve(request: web.Request) -> web.Response:
    return _json(_vector_store(request.app[STATE].vector_stores.get(_seen(request))))


async def vector_store_update(request: web.Request) -> web.Response:
    store = request.app[STATE].vector_stores.get(request.match_info["id"])
    data = await _read(request)
    store.obj.update({k: data[k] for k in ("name", "metadata", "expires_after") if k in data})
    return _json(_vector_store(store))


async def vector_store_delete(request: web.Request) -> web.Response:
    vs_id = _seen(request)
    request.app[STATE].vector_stores.delete(vs_id)
    return _json({"id": vs_id, "object": "vector_store.deleted", "deleted": True})


async def vector_store_file_add(request: web.Request) -> web.Response:
    state = request.app[STATE]
    store = state.vector_stores.get(request.match_info["id"])
    data = await _read(request)
    file_id = _required(data, "file_id")
    _attach(state, store, file_id, data)
    return _json(store.files[file_id])


async def vector_store_file_list(request: web.Request) -> web.Response:
    store = request.app[STATE].vector_stores.get(_seen(request))
    return _json(_page(request, store.files.values()))


def _vector_store_file(request: web.Request) -> tuple[_VectorStore, str]:
    store = request.app[STATE].vector_stores.get(_seen(request))
    file_id = request.match_info["file_id"]
    if file_id not in store.files:
        raise _not_found("vector store file", file_id)
    return store, file_id


async def vector_store_file_retrieve(request: web.Request) -> web.Response:
    store, file_id = _vector_store_file(request)
    return _json(store.files[file_id])


async def vector_store_file_delete(request: web.Request) -> web.Response:
    store, file_id = _vector_store_file(request)
    del store.files[file_id]
    return _json({"id": file_id, "object": "vector_store.file.deleted", "deleted": True})


# -- The app --------------------------------------------------------------------------------------


async def _name_instance(request: web.Request, response: web.StreamResponse) -> None:
    # A signal, not a middleware: it also reaches streamed answers, which are sent before a
    # middleware would see them.
    response.headers["x-mock-instance"] = request.app[OPTIONS].name


async def _uploads(app: web.Application) -> AsyncIterator[None]:
    yield
    app[STATE].close()


def create_mock_app(options: MockOptions | None = None) -> web.Application:
    app = web.Application(client_max_size=1 << 30, middlewares=[_errors])
    app[OPTIONS] = options or MockOptions()
    app[RECORDED] = deque(maxlen=1000)
    app[STATE] = MockState(app[OPTIONS])
    app.on_response_prepare.append(_name_instance)
    app.cleanup_ctx.append(_uploads)
    routes = (
        ("POST", "/v1/chat/completions", chat),
        ("POST", "/v1/completions", completions),
        ("POST", "/v1/embeddings", embeddings),
        ("GET", "/v1/models", models),
        ("POST", "/v1/responses", responses),
        ("GET", "/v1/responses/{id}", response_retrieve),
        ("DELETE", "/v1/responses/{id}", response_delete),
        ("POST", "/v1/responses/{id}/cancel", response_cancel),
        ("GET", "/v1/responses/{id}/input_items", response_input_items),
        ("POST", "/v1/images/generations", image_generate),
        ("POST", "/v1/images/edits", image_edit),
        ("POST", "/v1/images/variations", image_variation),
        ("GET", "/mock/image.png", image_file),
        ("POST", "/v1/audio/speech", speech),
        ("POST", "/v1/audio/transcriptions", transcriptions),
        ("POST", "/v1/audio/translations", translations),
        ("POST", "/v1/moderations", moderations),
        ("POST", "/v1/rerank", rerank),
        ("POST", "/v1/files", file_create),
        ("GET", "/v1/files", file_list),
        ("GET", "/v1/files/{id}", file_retrieve),
        ("DELETE", "/v1/files/{id}", file_delete),
        ("GET", "/v1/files/{id}/content", file_content),
        ("POST", "/v1/batches", batch_create),
        ("GET", "/v1/batches", batch_list),
        ("GET", "/v1/batches/{id}", batch_retrieve),
        ("POST", "/v1/batches/{id}/cancel", batch_cancel),
        ("POST", "/v1/vector_stores", vector_store_create),
        ("GET", "/v1/vector_stores", vector_store_list),
        ("GET", "/v1/vector_stores/{id}", vector_store_retrieve),
        ("POST", "/v1/vector_stores/{id}", vector_store_update),
        ("DELETE", "/v1/vector_stores/{id}", vector_store_delete),
        ("POST", "/v1/vector_stores/{id}/files", vector_store_file_add),
        ("GET", "/v1/vector_stores/{id}/files", vector_store_file_list),
        ("GET", "/v1/vector_stores/{id}/files/{file_id}", vector_store_file_retrieve),
        ("DELETE", "/v1/vector_stores/{id}/files/{file_id}", vector_store_file_delete),
    )
    for method, path, handler in routes:
        if method == "GET":
            app.router.add_get(path, handler)  # and HEAD, as before
        else:
            app.router.add_route(method, path, handler)
    return app


def run_mock(host: str, port: int, options: MockOptions) -> None:
    started = time.strftime("%H:%M:%S")
    print(f"mock upstream on http://{host}:{port}/v1 ({options.name}, {started})", flush=True)
    # A large accept queue, like a real provider's: the fake upstream must not be what a burst
    # of new connections waits on (the benchmark opens 1,000 streams at once).
    web.run_app(
        create_mock_app(options),
        host=host,
        port=port,
        access_log=None,
        print=None,
        backlog=4096,
    )
