"""What the bounded bytes kept of an answer say about it, for the spans: the model that
answered, the response's id, why generation stopped, the cache's share of the input tokens,
and whether a stream reached its end. Read from `RequestRecord.response_tail` (the answer's
last bytes as relayed, possibly after its first ones and a blank line: `Relayed.facts`), off
the request path, by regular expressions on bytes: no JSON parsing, so bytes cut anywhere (at
the start, mid-event, a stream aborted mid-chunk, or a head joined to a tail) only lose what
was cut. Between a key and its value only spaces and tabs are allowed (the providers' JSON
has no newline there), so that a head's last key never pairs with a joined tail's first value.

Shapes read (each tested on real-shaped bodies and streams):

* OpenAI Chat Completions and legacy Completions: a JSON body, or `data:` chunks ending with
  the usage chunk and `data: [DONE]`; `finish_reason` per choice; `prompt_tokens_details.
  cached_tokens`, `completion_tokens_details.reasoning_tokens`.
* OpenAI Responses: a JSON body, or events ending with `response.completed` (or `.incomplete`,
  `.failed`), whose `response` object has the id, model, usage (`input_tokens_details.
  cached_tokens`) and, when cut short, `incomplete_details.reason`.
* Anthropic Messages: a JSON body, or events ending with `message_delta` (`stop_reason`, the
  final usage) and `message_stop`; `cache_read_input_tokens`, `cache_creation_input_tokens`.
  A stream's id, model and first cache counts are in its first event (`message_start`):
  read when the head is kept, or when the stream is short.

A value is reported only when its whole token is in the bytes; nothing here raises. Finish
reasons are the distinct values, in order: a head and a tail may both hold the same chunk, so
two choices that stopped for the same reason report it once.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

# The response object's own id: the one followed by its type. OpenAI (and Azure, vLLM, ...)
# and Anthropic write `id` first and `object` / `type` next; a tool call's or an output
# item's id is followed by something else, so it is never taken for the response's.
_ID: Final = re.compile(
    rb'"id"[ \t]*:[ \t]*"([^"\\]{1,256})"[ \t]*,[ \t]*"(?:object|type)"[ \t]*:[ \t]*'
    rb'"(?:chat\.completion(?:\.chunk)?|text_completion|message|response)"'
)
_OPENAI_HEAD: Final = re.compile(
    rb'(?:data: ?)?\{"id":"([^"\\]{1,256})","object":"(?:chat\.completion(?:\.chunk)?|'
    rb'text_completion)","created":\d{1,20},"model":"([^"\\]{1,256})"'
)
_MODEL: Final = re.compile(rb'"model"[ \t]*:[ \t]*"([^"\\]{1,256})"')
_FINISH: Final = re.compile(rb'"finish_reason"[ \t]*:[ \t]*"([A-Za-z0-9_.-]{1,64})"')
_STOP: Final = re.compile(rb'"stop_reason"[ \t]*:[ \t]*"([A-Za-z0-9_.-]{1,64})"')
_INCOMPLETE: Final = re.compile(
    rb'"incomplete_details"[ \t]*:[ \t]*\{[ \t]*"reason"[ \t]*:[ \t]*"([A-Za-z0-9_.-]{1,64})"'
)
_CACHED: Final = re.compile(rb'"cached_tokens"[ \t]*:[ \t]*(\d{1,12})')
_CACHE_READ: Final = re.compile(rb'"cache_read_input_tokens"[ \t]*:[ \t]*(\d{1,12})')
_CACHE_WRITE: Final = re.compile(rb'"cache_creation_input_tokens"[ \t]*:[ \t]*(\d{1,12})')
_REASONING: Final = re.compile(rb'"reasoning_tokens"[ \t]*:[ \t]*(\d{1,12})')
# The last event of a stream that ended as it should: OpenAI's sentinel, Anthropic's
# message_stop, the Responses API's terminal events.
_STREAM_END: Final = re.compile(
    rb"data:[ \t]*\[DONE\]"
    rb'|"type"[ \t]*:[ \t]*"(?:message_stop|response\.(?:completed|incomplete|failed))"'
)
HEAD_WINDOW: Final = 512  # where a response's id and model are looked for first
END_WINDOW: Final = 768  # where its finish reasons, cache counts and end are
_FINISH_REASONS_MAX: Final = 16  # n choices: one reason each; a bound for a hostile body


@dataclass(slots=True)  # (not frozen: a frozen dataclass's __init__ costs twice as much)
class Answer:
    response_id: str | None = None
    response_model: str | None = None
    finish_reasons: tuple[str, ...] = ()
    cache_read_tokens: int | None = None  # input tokens served from the provider's cache
    cache_write_tokens: int | None = None  # input tokens written to it (Anthropic)
    reasoning_tokens: int | None = None  # output tokens spent reasoning (OpenAI)
    stream_end: bool = False  # the stream's closing event is in the tail


NOTHING: Final = Answer()


def read_answer(tail: bytes | None, stream: bool = True) -> Answer:
    """The facts `tail` holds (see the module docstring); `NOTHING` for None or b"".
    `stream_end` is looked for only in a `stream`.

    A scan of JSON for a quoted key costs about a microsecond per 2 KB (its quotes defeat
    the search's skipping), so each fact is looked for where it is: the response's id and
    model in the first `HEAD_WINDOW` bytes (a body's or a stream's first event, or any chunk
    of a stream's tail), else anywhere; why it stopped, the cache counts and the stream's end
    in the last `END_WINDOW` bytes (a stream's last chunks and usage, a body's end). Each
    pattern is tried only where its key is, never by a regular expression searching every
    position."""
    if not tail:
        return NOTHING
    head = tail[:HEAD_WINDOW]
    end = tail[-END_WINDOW:]
    # OpenAI: one finish_reason per choice, each non-null once (a stream's last chunk of that
    # choice); Anthropic: the message's stop_reason (its last value is the final one);
    # Responses: why it was cut short, when it was.
    reasons = _all(_FINISH, b'"finish_reason"', end)
    if not reasons and b"reason" in end:
        stop = _last(_STOP, b'"stop_reason"', end)
        if stop is None:
            stop = _last(_INCOMPLETE, b'"incomplete_details"', end)
        reasons = [stop] if stop is not None else []
    cached = cache_read = cache_write = reasoning = None
    if b"cache" in tail:
        cached = _last_number(_CACHED, b'"cached_tokens"', end)
        cache_read = _last_number(_CACHE_READ, b'"cache_read_input_tokens"', tail)
        cache_write = _last_number(_CACHE_WRITE, b'"cache_creation_input_tokens"', tail)
    if b"reasoning_tokens" in end:
        reasoning = _last_number(_REASONING, b'"reasoning_tokens"', end)
    # OpenAI's own order (`{"id":..,"object":..,"created":..,"model":..`, a body or a
    # stream's first chunk) in one match; anything else, each where it is.
    canonical = _OPENAI_HEAD.match(head)
    if canonical is not None:
        response_id: str | None = _text(canonical.group(1))
        response_model: str | None = _text(canonical.group(2))
    else:
        response_id = _last(_ID, b'"id"', head) or _last(_ID, b'"id"', tail)
        response_model = _last(_MODEL, b'"model"', head) or _last(_MODEL, b'"model"', tail)
    return Answer(
        response_id=response_id,
        response_model=response_model,
        finish_reasons=tuple(reasons),
        cache_read_tokens=cache_read if cache_read is not None else cached,
        cache_write_tokens=cache_write,
        reasoning_tokens=reasoning,
        stream_end=stream and _ended(end),
    )


def _last(pattern: re.Pattern[bytes], key: bytes, tail: bytes) -> str | None:
    """The value of the last occurrence of `key` that `pattern` matches at (a cut one, or a
    tool call's id, is passed over for the one before)."""
    at = len(tail)
    while (at := tail.rfind(key, 0, at)) >= 0:
        match = pattern.match(tail, at)
        if match is not None:
            return _text(match.group(1))
    return None


def _all(pattern: re.Pattern[bytes], key: bytes, tail: bytes) -> list[str]:
    """The distinct values of every occurrence of `key` that `pattern` matches at, in order
    (at most _FINISH_REASONS_MAX). Compact JSON (`"key":"value"`, what providers send) is
    found directly, skipping the many `"key":null` of a stream's chunks; only when there is
    none is every occurrence tried (blanks after the key)."""
    found = _each(pattern, key + b':"', tail)
    if not found and (b'": ' in tail or b'" :' in tail):
        found = _each(pattern, key, tail)
    return found


def _each(pattern: re.Pattern[bytes], needle: bytes, tail: bytes) -> list[str]:
    found: dict[str, None] = {}
    at = tail.find(needle)
    while at >= 0 and len(found) < _FINISH_REASONS_MAX:
        match = pattern.match(tail, at)
        if match is not None:
            found[_text(match.group(1))] = None
        at = tail.find(needle, at + len(needle))
    return list(found)


def _ended(tail: bytes) -> bool:
    """Is the tail's last event, whole (its line ended), a stream's closing one?"""
    if not tail.endswith((b"\n", b"\r")):
        return False
    body = tail.rstrip()
    last = body[body.rfind(b"\n\n") + 1 :]
    if last.endswith(b"[DONE]"):
        return _STREAM_END.search(last) is not None
    return b'"type"' in last and _STREAM_END.search(last) is not None


def _last_number(pattern: re.Pattern[bytes], name: bytes, tail: bytes) -> int | None:
    """The last count of that name: the final usage's (an Anthropic stream's message_delta
    repeats message_start's cache counts, or lacks them: then message_start's is the one).
    (A substring test first: most answers have none of these, and it is far cheaper.)"""
    value = _last(pattern, name, tail)
    return int(value) if value is not None else None


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", errors="replace")
