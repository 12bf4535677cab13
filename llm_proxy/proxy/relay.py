"""The byte-transparent relay: the committed answer, from the upstream to the client.

Chunks are written as they arrive (all that is buffered, in one write), never re-encoded
(compressed answers are inflated, see `llm_proxy.proxy.decoding`). Once the response has started
there is no retry: an upstream failure ends an SSE stream with an OpenAI-style error event, or
cuts a plain body short. A client that hangs up (a write fails, or aiohttp cancels the
handler) closes the upstream connection at once; one that stops reading is cut off after
`write_timeout_secs`. A stream ends for the client at `data: [DONE]`.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Final

import structlog
from aiohttp import web

from llm_proxy import errors
from llm_proxy.keys import BACKGROUND, HEALTH, LIFECYCLE, METRICS
from llm_proxy.protocols.refusals import REFUSAL_HINTS, classify_answer
from llm_proxy.proxy.client import Response, UpstreamError
from llm_proxy.proxy.outcome import Outcome, record
from llm_proxy.proxy.state import CLIENT_CLOSED, RequestState, speaks_anthropic, speaks_gemini
from llm_proxy.proxy.translation import MAX_ANSWER_BYTES, TranslatedStream, translate_whole
from llm_proxy.proxy.upstream import Upstream
from llm_proxy.proxy.usage import Relayed

log = structlog.get_logger()

# The end of an OpenAI stream. Clients (the openai SDK) close as soon as they read it, while
# the upstream may end its body a moment later: the client's answer is complete here.
_DONE_EVENTS: Final = (
    b"data: [DONE]\n\n",
    b"data:[DONE]\n\n",
    b"data: [DONE]\r\n\r\n",
    b"data:[DONE]\r\n\r\n",
)
# What is left of an upstream body after [DONE] is read off in the background, so the
# connection goes back to the pool: at most this long and this much, else it is closed.
_DRAIN_SECS: Final = 2.0
_DRAIN_BYTES: Final = 65536
# A sized answer up to this size is read whole and sent with one `web.Response`: its head and
# body leave in one write (aiohttp's cheapest path), and since aiohttp waits for the client
# (drain) only past 64 KB buffered, that write never waits (no write watch needed).
WHOLE_BODY_BYTES: Final = 32 * 1024


@dataclass(frozen=True, slots=True)
class Leg:
    """The attempt that committed: its answer is the client's answer."""

    request: web.Request
    state: RequestState
    upstream: Upstream
    resp: Response
    out: web.StreamResponse  # prepared: the head is sent
    relayed: Relayed
    is_sse: bool


def answers_whole(resp: Response, relayed: Relayed, is_sse: bool) -> bool:
    """Whether the answer goes to the client whole, with `relay_whole` (most non-streamed
    answers), rather than relayed as it arrives."""
    length = resp.content_length
    return (
        not is_sse
        and length is not None
        and length <= WHOLE_BODY_BYTES
        and relayed.inflater is None
    )


async def relay_whole(
    request: web.Request,
    state: RequestState,
    upstream: Upstream,
    resp: Response,
    relayed: Relayed,
    head: web.Response,
    first: bytes = b"",
    refusal: str | None = None,
) -> web.Response:
    """Read a small sized body whole and answer it with `head` (status and headers set) in
    one write. Nothing reaches the client before the body is in, so an upstream that fails
    mid-body becomes a clean 502/504 in the client's shape rather than a cut body. (Also any
    answer to translate: then read whole up to `MAX_ANSWER_BYTES`, inflated if need be.)
    `first`: what was read of it already (before commit). `refusal`: the upstream's protocol,
    when a refusal on content policy could still fall back (then `relayed.refused` says
    whether the answer is one; nothing has been sent yet either way)."""
    parts: list[bytes] = [first] if first else []
    translation = relayed.translation
    try:
        if translation is None:
            while chunk := await resp.read_chunk():
                parts.append(chunk)
        else:
            await _read_whole(resp, relayed, parts, upstream.name)
    except (TimeoutError, UpstreamError) as exc:
        kind = _mid_body_failure(request, state, upstream, exc, streamed=False)
        what = "stalled" if kind == "timeout" else "failed"
        return errors.error_response(
            errors.ProxyError(
                state.final_status or 502,
                f"Upstream provider {upstream.name!r} {what} mid-answer.",
                type=errors.API_ERROR,
                code="upstream_timeout" if kind == "timeout" else "upstream_error",
            ),
            speaks_anthropic(request.path),
            state.request_id,
            speaks_gemini(request.path),
        )
    body = parts[0] if len(parts) == 1 else b"".join(parts)
    if refusal is not None and relayed.status < 300:
        for hint in REFUSAL_HINTS[refusal]:
            if hint in body:
                relayed.refused = classify_answer(refusal, body) == "content_policy"
                break
    relayed.note(body)
    relayed.complete = True
    state.final_status = relayed.status
    if translation is not None:
        body, relayed.usage = translate_whole(translation, relayed.status, body)
        head.headers["Content-Type"] = "application/json"
    head.body = body
    return head


async def _read_whole(resp: Response, relayed: Relayed, parts: list[bytes], name: str) -> None:
    """An answer to translate, read whole (inflated if it came compressed), bounded."""
    inflater, size = relayed.inflater, 0
    while True:
        chunk = await (resp.read_chunk() if inflater is None else inflater.read_chunk(resp))
        if not chunk:
            return
        size += len(chunk)
        if size > MAX_ANSWER_BYTES:
            raise errors.ProxyError(
                502,
                f"Upstream provider {name!r} answered more than "
                f"{MAX_ANSWER_BYTES >> 20} MiB: too large to translate.",
                type=errors.API_ERROR,
                code="upstream_error",
            )
        parts.append(chunk)


async def relay(leg: Leg, first: bytes) -> bool:
    """Relay the body (`first`: what was already read of it); True when the rest of the
    upstream body (after [DONE]) was handed to a background drain, which then owns `resp`.
    (One coroutine, not two: a thousand open streams each hold every frame of their stack.)"""
    request, state, upstream, resp, out = leg.request, leg.state, leg.upstream, leg.resp, leg.out
    relayed, is_sse = leg.relayed, leg.is_sse
    stripper, inflater = relayed.stripper, relayed.inflater
    watch = request.app[LIFECYCLE].write_watches.watch(
        request.transport, state.snapshot.config.write_timeout_secs
    )
    pending_ttft = is_sse
    handed_off = False
    chunk = first
    recording = None
    if state.record_limit:  # a cache miss: what the client gets, kept (bounded)
        recording = state.recording = bytearray()
    # A translated stream gets pings while its upstream says nothing (a model thinking).
    pinger = _Pinger(out, stripper) if isinstance(stripper, TranslatedStream) else None
    try:
        while True:
            if not chunk:
                try:
                    if inflater is None:
                        chunk = await resp.read_chunk()
                    else:
                        chunk = await inflater.read_chunk(resp)
                except (TimeoutError, UpstreamError) as exc:
                    if pinger is not None:
                        pinger.stop()  # no ping after the stream's last event
                    watch.writing()
                    await _upstream_failed(leg, exc)
                    return False
                if not chunk:
                    break
            relayed.note(chunk)
            if stripper is not None:
                chunk = stripper.feed(chunk)
                if not chunk:
                    continue
            if recording is not None:
                if len(recording) + len(chunk) > state.record_limit:
                    recording = state.recording = None  # too large to keep
                else:
                    recording += chunk
            watch.writing()
            await out.write(chunk)  # a hang-up (or the write watch) raises ConnectionResetError
            watch.written()
            if pinger is not None:
                pinger.wrote()
            if pending_ttft:
                pending_ttft = False
                ttft = time.perf_counter() - state.started
                state.ttft_ms = round(ttft * 1000, 2)
                request.app[METRICS].time_to_first_token(state.model_label, upstream.name, ttft)
            if is_sse and not resp.complete and chunk.endswith(_DONE_EVENTS):
                _drain_in_background(request.app, resp)
                handed_off = True
                break
            chunk = b""
        if pinger is not None:
            pinger.stop()
        watch.writing()
        await _finish(leg)
        return handed_off
    except ConnectionResetError:
        state.final_status = CLIENT_CLOSED
        return False
    finally:
        watch.close()
        if pinger is not None:
            pinger.stop()


# A translated stream whose upstream has been silent this long gets a ping (Anthropic's API
# pings its own streams; proxies and load balancers drop connections idle for a minute).
PING_SECS: float = 10.0


class _Pinger:
    """Sends the translator's ping on a stream idle for `PING_SECS`: one lazy timer per
    stream, re-armed from the last write (the relay notes each), so a busy stream never
    pings. A ping is one event in one write, so it never splits another."""

    __slots__ = ("_handle", "_last", "_loop", "_out", "_stream", "_task")

    def __init__(self, out: web.StreamResponse, stream: TranslatedStream) -> None:
        self._out, self._stream = out, stream
        self._loop = asyncio.get_running_loop()
        self._last = self._loop.time()
        self._task: asyncio.Task[None] | None = None
        self._handle = self._loop.call_at(self._last + PING_SECS, self._fire)

    def wrote(self) -> None:
        self._last = self._loop.time()

    def _fire(self) -> None:
        now = self._loop.time()
        if now - self._last >= PING_SECS and self._task is None:
            self._task = self._loop.create_task(self._ping())
            self._last = now
        self._handle = self._loop.call_at(self._last + PING_SECS, self._fire)

    async def _ping(self) -> None:
        try:
            ping = self._stream.ping()  # (b"" for Gemini's clients: their SDK takes no comment)
            if ping:
                await self._out.write(ping)
        except ConnectionResetError:
            pass  # the relay finds out on its next write
        finally:
            self._task = None

    def stop(self) -> None:
        self._handle.cancel()
        if self._task is not None:
            self._task.cancel()


async def _finish(leg: Leg) -> None:
    """The client has the whole answer: a hang-up from here on is not a 499. What the usage
    stripper still holds, then the end of the body."""
    relayed, out = leg.relayed, leg.out
    relayed.complete = True
    leg.state.final_status = relayed.status
    try:
        if relayed.stripper is not None and (rest := relayed.stripper.flush()):
            recording = leg.state.recording
            if recording is not None:
                recording += rest
            await out.write(rest)
        await out.write_eof()
    except ConnectionResetError:
        pass


def _drain_in_background(app: web.Application, resp: Response) -> None:
    task = asyncio.get_running_loop().create_task(_drain(resp))
    background = app[BACKGROUND]
    background.add(task)
    task.add_done_callback(background.discard)


async def _drain(resp: Response) -> None:
    """Read what follows [DONE] so the connection can be reused; close it if that takes
    too long or too much."""
    deadline = asyncio.get_running_loop().time() + _DRAIN_SECS
    size = 0
    try:
        while size <= _DRAIN_BYTES:
            chunk = await resp.read_chunk(deadline)
            if not chunk:
                break
            size += len(chunk)
    except (TimeoutError, UpstreamError):
        pass
    finally:
        resp.close()


def _mid_body_failure(
    request: web.Request, state: RequestState, upstream: Upstream, exc: Exception, streamed: bool
) -> str:
    """Health, metric, log line and final status of an upstream that failed mid-body;
    returns the kind (timeout, disconnect)."""
    timeout = isinstance(exc, TimeoutError)
    kind = "timeout" if timeout else "disconnect"
    outcome = Outcome.MID_BODY_TIMEOUT if timeout else Outcome.MID_BODY_DISCONNECT
    record(request.app[HEALTH], request.app[METRICS], upstream.name, outcome)
    log.warning(
        "upstream_failed_mid_body",
        request_id=state.request_id,
        provider=upstream.name,
        error=type(exc).__name__,
        streamed=streamed,
    )
    state.final_status = 504 if kind == "timeout" else 502
    return kind


async def _upstream_failed(leg: Leg, exc: Exception) -> None:
    request, state, upstream, out = leg.request, leg.state, leg.upstream, leg.out
    relayed, is_sse = leg.relayed, leg.is_sse
    kind = _mid_body_failure(request, state, upstream, exc, streamed=is_sse)
    if not is_sse:
        # Headers are gone; the only honest signal left is a truncated body.
        if request.transport is not None:
            request.transport.abort()
        return
    # Close any half-written event first so the error event parses on its own.
    # (With a usage stripper in between, the client only ever received whole events.)
    tail = relayed.tail
    whole = relayed.stripper is not None or not tail or tail.endswith(b"\n\n")
    prefix = b"" if whole else b"\n\n"
    message = f"Upstream provider {upstream.name!r} failed mid-stream."
    if kind == "timeout":
        message = f"Upstream provider {upstream.name!r} stalled mid-stream."
    if isinstance(relayed.stripper, TranslatedStream):
        event = relayed.stripper.fail(message)  # closes the client's protocol's stream
    else:
        event = errors.sse_error_event(
            message, code="upstream_error", anthropic=relayed.anthropic, gemini=relayed.gemini
        )
    try:
        await out.write(prefix + event)
        await out.write_eof()
    except ConnectionResetError:
        state.final_status = CLIENT_CLOSED
