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
_FINISH_REASONS_MAX: Final = 16  # n choices: one reason each; a bound for a hostile body


@dataclass(frozen=True, slots=True)
class Answer:
    response_id: str | None = None
    response_model: str | None = None
    finish_reasons: tuple[str, ...] = ()
    cache_read_tokens: int | None = None  # input tokens served from the provider's cache
    cache_write_tokens: int | None = None  # input tokens written to it (Anthropic)
    reasoning_tokens: int | None = None  # output tokens spent reasoning (OpenAI)
    stream_end: bool = False  # the stream's closing event is in the tail


NOTHING: Final = Answer()


def read_answer(tail: bytes | None) -> Answer:
    """The facts `tail` holds (see the module docstring); `NOTHING` for None or b""."""
    if not tail:
        return NOTHING
    ids = _ID.findall(tail)
    models = _MODEL.findall(tail)
    # OpenAI: one finish_reason per choice, each non-null once (a stream's last chunk of that
    # choice); Anthropic: the message's stop_reason (its last value is the final one);
    # Responses: why it was cut short, when it was.
    reasons = list(dict.fromkeys(_text(r) for r in _FINISH.findall(tail)))[:_FINISH_REASONS_MAX]
    if not reasons and (stop := _STOP.findall(tail)):
        reasons = [_text(stop[-1])]
    if not reasons and (incomplete := _INCOMPLETE.findall(tail)):
        reasons = [_text(incomplete[-1])]
    cached = _last_number(_CACHED, tail)
    cache_read = _last_number(_CACHE_READ, tail)
    return Answer(
        response_id=_text(ids[-1]) if ids else None,
        response_model=_text(models[-1]) if models else None,
        finish_reasons=tuple(reasons),
        cache_read_tokens=cache_read if cache_read is not None else cached,
        cache_write_tokens=_last_number(_CACHE_WRITE, tail),
        reasoning_tokens=_last_number(_REASONING, tail),
        stream_end=_ended(tail),
    )


def _ended(tail: bytes) -> bool:
    """Is the tail's last event, whole (its line ended), a stream's closing one?"""
    if not tail.endswith((b"\n", b"\r")):
        return False
    body = tail.rstrip()
    last = body[body.rfind(b"\n\n") + 1 :]
    return _STREAM_END.search(last) is not None


def _last_number(pattern: re.Pattern[bytes], tail: bytes) -> int | None:
    """The last count of that name: the final usage's (an Anthropic stream's message_delta
    repeats message_start's cache counts, or lacks them: then message_start's is the one)."""
    found = pattern.findall(tail)
    return int(found[-1]) if found else None


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", errors="replace")
