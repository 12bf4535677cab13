"""Token usage from upstream bytes, without parsing every chunk.

* `find_usage(tail)` reads the last `"usage"` object in the tail of a body or stream (OpenAI
  puts it at the end of a JSON body and in the final chunk of a stream).
* `request_usage_in_stream(body)` asks the upstream for that final usage chunk
  (`stream_options.include_usage`) whatever the client sent; when the client had not asked,
  `UsageStripper` then removes what the option added, so the client receives exactly the
  bytes it would have without it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, Protocol

import orjson

from llm_proxy import errors
from llm_proxy.proxy.decoding import Inflater
from llm_proxy.proxy.jsonbody import exact_loads

if TYPE_CHECKING:
    from llm_proxy.proxy.translation import Translation

_NUMBERS: Final = re.compile(
    rb'"(prompt_tokens|completion_tokens|total_tokens|input_tokens|output_tokens)"\s*:\s*(\d+)'
)
_NAMES: Final = {
    b"prompt_tokens": "prompt",
    b"input_tokens": "prompt",
    b"completion_tokens": "completion",
    b"output_tokens": "completion",
    b"total_tokens": "total",
}


@dataclass(frozen=True, slots=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int
    estimated: bool = False  # counted by the proxy (tiktoken), not reported by the upstream

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


def find_usage(tail: bytes) -> Usage | None:
    at = tail.rfind(b'"usage"')
    if at < 0:
        return None
    window = tail[at + 7 : at + 1200]
    if window.lstrip(b" \t\r\n:").startswith(b"null"):
        return None
    found: dict[str, int] = {}
    for name, value in _NUMBERS.findall(window):
        # Nested *_details objects come later; the first occurrence is the top-level one.
        found.setdefault(_NAMES[name], int(value))
    if "prompt" not in found and "total" not in found:
        return None
    prompt = found.get("prompt", 0)
    completion = found.get("completion", max(0, found.get("total", prompt) - prompt))
    return Usage(prompt, completion)


_ANTHROPIC_NUMBERS: Final = re.compile(
    rb'"(input_tokens|output_tokens|cache_read_input_tokens|cache_creation_input_tokens)"'
    rb"\s*:\s*(\d+)"
)


def _anthropic_fields(window: bytes) -> dict[bytes, int]:
    found: dict[bytes, int] = {}
    for name, value in _ANTHROPIC_NUMBERS.findall(window):
        found.setdefault(name, int(value))  # the first: nested objects come later
    return found


def find_anthropic_usage(head: bytes, tail: bytes) -> Usage | None:
    """Usage from an Anthropic answer: a Message's `usage` (its input tokens not counting
    the cache's reads and writes, which the prompt's count includes here); for a stream, the
    `message_start` event's (in `head`) updated by the last `message_delta`'s (in `tail`)."""
    fields: dict[bytes, int] = {}
    for part in (head, tail):
        at = part.find(b'"usage"') if part is head else part.rfind(b'"usage"')
        if at >= 0:
            fields.update(_anthropic_fields(part[at + 7 : at + 1200]))
    if b"input_tokens" not in fields and b"output_tokens" not in fields:
        return None
    prompt = (
        fields.get(b"input_tokens", 0)
        + fields.get(b"cache_read_input_tokens", 0)
        + fields.get(b"cache_creation_input_tokens", 0)
    )
    return Usage(prompt, fields.get(b"output_tokens", 0))


_GEMINI_NUMBERS: Final = re.compile(
    rb'"(promptTokenCount|candidatesTokenCount|thoughtsTokenCount|toolUsePromptTokenCount)"'
    rb"\s*:\s*(\d+)"
)


def find_gemini_usage(tail: bytes) -> Usage | None:
    """Usage from a Gemini answer or stream: the last `usageMetadata` (a stream's last chunk
    carries the totals). Its prompt count includes cached tokens, as OpenAI's does; thinking
    tokens are output."""
    at = tail.rfind(b'"usageMetadata"')
    if at < 0:
        return None
    found: dict[bytes, int] = {}
    for name, value in _GEMINI_NUMBERS.findall(tail, at, at + 1200):
        found.setdefault(name, int(value))
    if b"promptTokenCount" not in found:
        return None
    prompt = found[b"promptTokenCount"] + found.get(b"toolUsePromptTokenCount", 0)
    output = found.get(b"candidatesTokenCount", 0) + found.get(b"thoughtsTokenCount", 0)
    return Usage(prompt, output)


def request_usage_in_stream(body: bytes, data: dict[str, Any]) -> tuple[bytes, bool]:
    """`body` asking for the stream's usage chunk, and whether the proxy added that request
    (then `UsageStripper` hides the chunk from the client). Whatever the client sent (no
    `stream_options`, `null`, `{}`, `include_usage: false` or `null`), the upstream gets
    `include_usage: true` and the client's other options: without it a stream reports no
    usage and would be charged an estimate. A `stream_options` that is not an object is a 400.
    """
    options = data.get("stream_options")
    if options is not None and not isinstance(options, dict):
        raise errors.bad_param("stream_options", "`stream_options` must be an object.")
    plain = _plainly_once(body)
    if plain and isinstance(options, dict) and options.get("include_usage") is True:
        return body, False  # the client asked itself: it gets the chunk
    if plain and "stream_options" not in data:
        start = body.find(b"{")
        spliced = body[: start + 1] + b'"stream_options":{"include_usage":true},'
        return spliced + body[start + 1 :], True
    # null, {}, false, or a spelling only a parser reads the way the upstream will (an
    # escaped or repeated key: the last one counts, for orjson, the stdlib and the upstream).
    exact = exact_loads(body)  # keeps big integers exact; only for these rare cases
    given = exact.get("stream_options")
    asked = isinstance(given, dict) and given.get("include_usage") is True
    exact["stream_options"] = {**(given or {}), "include_usage": True}
    return json.dumps(exact, ensure_ascii=False, separators=(",", ":")).encode(), not asked


# `\u` escapes that could spell a letter of `stream_options` or `include_usage`.
_KEY_ESCAPES: Final = re.compile(rb"\\u00[5-7]")


def _plainly_once(body: bytes) -> bool:
    """Do `stream_options` and `include_usage` each appear at most once, unescaped? Then what
    the proxy parsed is what every parser reads."""
    return (
        body.count(b'"stream_options"') <= 1
        and body.count(b'"include_usage"') <= 1
        and (b"\\u00" not in body or _KEY_ESCAPES.search(body) is None)
    )


class StreamFilter(Protocol):
    """What the relay passes a stream's chunks through (whole events out)."""

    @property
    def usage(self) -> Usage | None: ...

    def feed(self, chunk: bytes) -> bytes: ...

    def flush(self) -> bytes: ...


class UsageStripper:
    """Removes what `include_usage` added to a stream: the usage-only final chunk (kept in
    `usage`) and the `"usage":null` field OpenAI adds to every other chunk.

    Works on whole events: an incomplete event is held until its blank line arrives.
    """

    _HOLD_MAX: Final = 1 << 16  # an upstream without blank-line framing is passed through

    def __init__(self) -> None:
        self._pending = b""
        self.usage: Usage | None = None

    def feed(self, chunk: bytes) -> bytes:
        data = self._pending + chunk if self._pending else chunk
        cut = data.rfind(b"\n\n")
        if cut < 0:
            if len(data) > self._HOLD_MAX:
                self._pending = b""
                return data
            self._pending = data
            return b""
        ready, self._pending = data[: cut + 2], data[cut + 2 :]
        if b'"usage"' not in ready:
            return ready
        if b'"usage":{' not in ready:  # the common chunk: only the added null to remove
            return ready.replace(b',"usage":null', b"")
        return self._strip(ready)

    def flush(self) -> bytes:
        rest, self._pending = self._pending, b""
        return self._strip(rest) if b'"usage"' in rest else rest

    def _strip(self, events: bytes) -> bytes:
        out = []
        for event in events.split(b"\n\n"):
            if b'"usage":{' in event and b'"choices":[]' in event:
                self.usage = find_usage(event) or self.usage
                continue
            out.append(event.replace(b',"usage":null', b""))
        return b"\n\n".join(out)


TAIL_BYTES: Final = 2048  # enough for a final usage chunk or a JSON body's trailing usage
FACTS_HEAD_BYTES: Final = 4096  # of an answer, for its trace (with its tail)
KEEP_BYTES: Final = 64 * 1024  # bounded copy for counting tokens ourselves (then extrapolated)
# A stream keeps only its tail: its events are alike, so the tail extrapolates as well as a
# prefix would, and a thousand open streams must not each hold a copy of what they relayed
# (measured: 3 MB per 1,000 short streams). Nearly every stream reports its own usage anyway:
# the proxy asks for it (see `request_usage_in_stream`).
STREAM_KEEP_BYTES: Final = 0


@dataclass(slots=True)
class Relayed:
    """What crossed the proxy, for token accounting after (or despite) the relay."""

    status: int = 0  # the upstream's HTTP status; 0 when it never answered
    # The first `keep` bytes relayed, in one buffer (no object per chunk), and past that only
    # the last TAIL_BYTES: the common stream never pays for more than one append per chunk.
    kept: bytearray = field(default_factory=bytearray)
    keep: int = KEEP_BYTES  # STREAM_KEEP_BYTES for event streams

    @property
    def sample(self) -> bytes:
        """What token counting reads: the kept prefix, else (a stream) the tail."""
        return bytes(self.kept) or self.tail

    _late_tail: bytes = b""
    total_bytes: int = 0
    complete: bool = False  # the upstream body was relayed to its end
    # What the relay passes each chunk through: the usage stripper of a pass-through stream,
    # or the translator of a stream in the other protocol (`llm_proxy.proxy.translation`).
    stripper: StreamFilter | None = None
    # Set when the upstream compressed its answer anyway: every byte above is inflated.
    inflater: Inflater | None = None
    # The client speaks another protocol than the upstream: how the answer is translated.
    translation: Translation | None = None
    usage: Usage | None = None  # what a translated whole answer reported
    anthropic: bool = False  # an Anthropic answer passed through (its usage read so)
    gemini: bool = False  # a Gemini answer passed through (its `usageMetadata` read so)
    # A whole answer that is a refusal on content policy (looked for only with a
    # content-policy chain to take: `relay_whole`'s `refusal`).
    refused: bool = False

    @property
    def stripped_usage(self) -> Usage | None:
        """The usage the stream filter saw (or a translated answer reported), if any."""
        if self.usage is not None:
            return self.usage
        return self.stripper.usage if self.stripper is not None else None

    @property
    def tail(self) -> bytes:
        """The last TAIL_BYTES relayed."""
        return self._late_tail or bytes(self.kept[-TAIL_BYTES:])

    @property
    def facts(self) -> bytes:
        """What a trace reads the answer's model, id, finish reasons and cached tokens from:
        its first bytes (an Anthropic stream's `message_start`) and its last."""
        kept = self.kept
        if not self._late_tail and len(kept) <= FACTS_HEAD_BYTES + TAIL_BYTES:
            return bytes(kept)
        return bytes(kept[:FACTS_HEAD_BYTES]) + b"\n\n" + self.tail

    def note(self, chunk: bytes) -> None:
        self.total_bytes += len(chunk)
        kept = self.kept
        if len(kept) < self.keep:
            kept += chunk
        else:
            self._late_tail = (self.tail + chunk)[-TAIL_BYTES:]


def text_of_request(data: dict[str, Any]) -> str:
    """The text a request sends to the model, for counting prompt tokens ourselves."""
    parts: list[str] = []
    _collect(data.get("messages"), parts)
    _collect(data.get("prompt"), parts)
    _collect(data.get("input"), parts)
    _collect(data.get("instructions"), parts)
    _collect(data.get("system"), parts)  # (Anthropic's Messages API)
    return "\n".join(parts)


def _collect(value: Any, parts: list[str], depth: int = 0) -> None:
    if depth > _TEXT_DEPTH:
        return  # clients may nest anything; text sits a few levels down
    if isinstance(value, str):
        parts.append(value)
    elif isinstance(value, list):
        for item in value:
            _collect(item, parts, depth + 1)
    elif isinstance(value, dict):
        for name in ("content", "text", "input"):
            _collect(value.get(name), parts, depth + 1)


_TEXT_DEPTH: Final = 32
_TEXT: Final = re.compile(rb'"(?:content|text|delta)"\s*:\s*("(?:[^"\\]|\\.)*")')


def text_of_response(relayed: bytes) -> str:
    """Generated text in relayed bytes (JSON body or SSE chunks), for counting ourselves."""
    out = []
    for raw in _TEXT.findall(relayed):
        try:
            out.append(orjson.loads(raw))
        except orjson.JSONDecodeError:
            continue
    return "".join(s for s in out if isinstance(s, str))
