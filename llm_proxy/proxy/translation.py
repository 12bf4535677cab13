"""A call whose client speaks another protocol than the provider that answers it: the request
translated for the provider, and what turns its answer back into the client's protocol.

The translators themselves are the protocol plane's (`llm_proxy.protocols`): pure functions
and stream state machines. Here they are bound to one attempt: the request body is translated
once per provider tried (providers of one model may speak different protocols), and the answer
is translated as the relay receives it: a stream event by event (`TranslatedStream`, in the
relay's filter slot, where the usage stripper sits for a pass-through), a JSON answer or an
error answer whole.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

import orjson

from llm_proxy import errors
from llm_proxy.protocols import chat_via_messages, messages_via_chat
from llm_proxy.protocols.chat_stream import ChatStream
from llm_proxy.protocols.errors import (
    TranslationError,
    anthropic_to_openai,
    openai_to_anthropic,
)
from llm_proxy.protocols.messages_answer import message_answer
from llm_proxy.protocols.messages_stream import MessagesStream
from llm_proxy.protocols.stream import StreamTranslator
from llm_proxy.protocols.usage import TokenUsage, from_anthropic, from_openai
from llm_proxy.proxy.upstream import ANTHROPIC, Upstream
from llm_proxy.proxy.usage import Usage

# The endpoints a call can be translated for: Anthropic's Messages for a chat-completions
# upstream, chat completions for an Anthropic upstream.
MESSAGES: Final = "/messages"
CHAT: Final = "/chat/completions"
# What an Anthropic upstream serves: every other OpenAI endpoint is refused before it is sent.
ANTHROPIC_ENDPOINTS: Final = frozenset({MESSAGES, "/messages/count_tokens"})
# A translated JSON answer is read whole before it is translated: bounded.
MAX_ANSWER_BYTES: Final = 32 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Translation:
    """One attempt's translation: where the translated request goes, and how its answer
    comes back."""

    endpoint: str  # the provider's endpoint
    stream: Callable[[], StreamTranslator]  # for a successful event stream
    answer: Callable[[dict[str, Any]], dict[str, Any]]  # for a successful JSON answer
    error: Callable[[int, bytes], bytes]  # an error answer's body, in the client's shape
    anthropic: bool  # the client speaks Anthropic's protocol

    def usage_of(self, answer: dict[str, Any]) -> Usage | None:
        """The usage a JSON answer (the provider's, untranslated) reports."""
        from_answer = answer.get("usage")
        if not isinstance(from_answer, dict):
            return None
        # The provider speaks the other protocol than the client.
        reported = from_openai(from_answer) if self.anthropic else from_anthropic(from_answer)
        return as_usage(reported)


def as_usage(usage: TokenUsage | None) -> Usage | None:
    """The proxy's usage (OpenAI's meaning: cached tokens inside the prompt's)."""
    if usage is None:
        return None
    return Usage(usage.prompt_tokens, usage.output_tokens)


def translate(
    anthropic_client: bool, upstream: Upstream, data: dict[str, Any], model: str
) -> tuple[bytes, Translation] | None:
    """The request body for `upstream` and its translation, when the client's protocol
    (`anthropic_client`) differs from the provider's; None when it does not. A request the
    provider's protocol cannot carry is a 400."""
    if anthropic_client == (upstream.protocol == ANTHROPIC):
        return None
    try:
        if anthropic_client:
            return _messages_via_chat(upstream, data, model)
        return _chat_via_messages(upstream, data, model)
    except TranslationError as exc:
        raise errors.bad_param(exc.param, exc.message) from None


def _messages_via_chat(
    upstream: Upstream, data: dict[str, Any], model: str
) -> tuple[bytes, Translation]:
    chat, call = messages_via_chat.chat_request(
        data, model=model, max_tokens_cap=upstream.max_output_tokens
    )
    translation = Translation(
        CHAT,
        stream=lambda: MessagesStream(call),
        answer=lambda answer: message_answer(answer, call),
        error=openai_to_anthropic,
        anthropic=True,
    )
    return orjson.dumps(chat), translation


def _chat_via_messages(
    upstream: Upstream, data: dict[str, Any], model: str
) -> tuple[bytes, Translation]:
    messages, call = chat_via_messages.messages_request(
        data,
        model=model,
        default_max_tokens=upstream.default_max_tokens,
        max_tokens_cap=upstream.max_output_tokens,
    )
    created = int(time.time())
    translation = Translation(
        MESSAGES,
        stream=lambda: ChatStream(call, created=created),
        answer=lambda answer: chat_via_messages.chat_answer(answer, call, created=created),
        error=anthropic_to_openai,
        anthropic=False,
    )
    return orjson.dumps(messages), translation


class TranslatedStream:
    """A stream translator in the relay's filter slot (where a pass-through's usage stripper
    sits): `feed` and `flush` as the stripper's, `usage` in the proxy's terms."""

    __slots__ = ("translator",)

    def __init__(self, translator: StreamTranslator) -> None:
        self.translator = translator

    def feed(self, chunk: bytes) -> bytes:
        return self.translator.feed(chunk)

    def flush(self) -> bytes:
        return self.translator.flush()

    def fail(self, message: str) -> bytes:
        return self.translator.fail(message)

    def ping(self) -> bytes:
        return self.translator.ping()

    @property
    def usage(self) -> Usage | None:
        return as_usage(self.translator.usage)


def translate_whole(
    translation: Translation, status: int, body: bytes
) -> tuple[bytes, Usage | None]:
    """A whole answer in the client's protocol: a successful one translated (with the usage it
    reports), an error one in the client's error shape (its status kept). An answer that is not
    the JSON object the provider's protocol promises is the provider's fault: 502."""
    if not 200 <= status < 300:
        return translation.error(status, body), None
    try:
        answer = orjson.loads(body)
    except orjson.JSONDecodeError:
        answer = None
    if not isinstance(answer, dict):
        raise errors.ProxyError(
            502,
            "The upstream's answer is not a JSON object, so it cannot be translated.",
            type=errors.API_ERROR,
            code="upstream_error",
        )
    return orjson.dumps(translation.answer(answer)), translation.usage_of(answer)
