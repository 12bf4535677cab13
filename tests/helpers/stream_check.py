"""Every event stream the suite's HTTP session reads whole (`await resp.read()`) is checked:
whatever the fake upstream behind the proxy sent, the client must get whole events, each
`data:` a JSON value (or `[DONE]`), and an end: `[DONE]` or an error event for a
chat-completions stream (`check_framing`); an Anthropic Messages stream is checked against its
whole grammar (`check_anthropic_stream`, event types newer than the checker allowed). The
translated streams' full OpenAI grammar (`check_openai_stream`) is checked by their own tests:
many older tests' fake upstreams send minimal chunks (no `id`), which the proxy passes as they
are. (Streams read piece by piece are checked by their tests.)"""

from __future__ import annotations

import json
from types import SimpleNamespace

import aiohttp

from tests.helpers.grammar_anthropic import check_anthropic_stream


def check_framing(raw: bytes) -> None:
    """A chat-completions stream as a client reads it: whole events, each one `data:` line
    holding JSON (or `[DONE]`), ending with `[DONE]` or an error event."""
    text = raw.decode("utf-8").replace("\r\n", "\n")
    assert text.endswith("\n\n"), f"the stream ends inside an event: {text[-120:]!r}"
    payloads = []
    for block in text[:-2].split("\n\n"):
        lines = [line for line in block.split("\n") if line and not line.startswith(":")]
        data = [line for line in lines if line.startswith("data:")]
        if not data:
            continue
        payload = "\n".join(line[5:].lstrip() for line in data)
        if payload != "[DONE]":
            json.loads(payload)  # (a ValueError names the broken event)
        payloads.append(payload)
    assert payloads, "the stream has no event"
    last = payloads[-1]
    assert last == "[DONE]" or '"error"' in last, f"the stream has no end: {last[:200]!r}"


async def _answered(
    session: aiohttp.ClientSession, context: SimpleNamespace, params: aiohttp.TraceRequestEndParams
) -> None:
    response = params.response
    context.sse = response.status == 200 and response.content_type == "text/event-stream"


async def _read(
    session: aiohttp.ClientSession,
    context: SimpleNamespace,
    params: aiohttp.TraceResponseChunkReceivedParams,
) -> None:
    if not getattr(context, "sse", False):
        return
    path = params.url.path
    if path.endswith("/chat/completions"):
        check_framing(params.chunk)
    elif path.endswith("/messages"):
        check_anthropic_stream(params.chunk, unknown_events=True)


def stream_checks() -> aiohttp.TraceConfig:
    """The trace config that checks what a session reads (see the module docstring)."""
    config = aiohttp.TraceConfig()
    config.on_request_end.append(_answered)
    config.on_response_chunk_received.append(_read)
    return config
