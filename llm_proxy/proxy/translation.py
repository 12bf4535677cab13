r"""A call whose client speaks another protocol than the provider that answers it: the request
translated for the provider, and what turns its answer back into the client's protocol.

The translators themselves are the protocol plane's (`llm_proxy.protocols`): pure functions
and stream state machines. Here they are bound to one attempt: the request body is translated
once per provider tried (providers of one model may speak different protocols), and the answer
is translated as the relay receives it: a stream event by event (`TranslatedStream`, in the
relay's filter slot, where the usage stripper sits for a pass-through), a JSON answer or an
error answer whole.

Anthropic's Messages API is the pivot. A client's request is put in it (`_ClientLeg`: nothing
to do for an Anthropic client), then in the provider's protocol (`_UpstreamLeg`: nothing to do
for an Anthropic provider); an answer goes back the same two steps. So each protocol needs one
pair of translators to and from the pivot, and OpenAI <-> Anthropic, the common pair, is a
single step as before.

    client, provider    openai         anthropic      gemini / vertex  bedrock
    openai              (as is)        1 step         2 steps          2 steps
    anthropic           1 step         (as is)        1 step           1 step
    gemini              2 steps        1 step         (as is)          2 steps
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, Final

import orjson

from llm_proxy import errors
from llm_proxy.protocols import (
    chat_via_messages,
    converse,
    gemini,
    gemini_client,
    gemini_embeddings,
    messages_via_chat,
)
from llm_proxy.protocols.chat_stream import ChatStream
from llm_proxy.protocols.converse_stream import MessagesFromConverse
from llm_proxy.protocols.errors import (
    TranslationError,
    anthropic_to_openai,
    openai_to_anthropic,
)
from llm_proxy.protocols.gemini_client_stream import GeminiFromMessages
from llm_proxy.protocols.gemini_stream import MessagesFromGemini
from llm_proxy.protocols.messages_answer import message_answer
from llm_proxy.protocols.messages_stream import MessagesStream
from llm_proxy.protocols.stream import StreamTranslator
from llm_proxy.protocols.usage import TokenUsage, from_anthropic, from_openai
from llm_proxy.proxy import cloud
from llm_proxy.proxy.cloud import CloudTarget
from llm_proxy.proxy.upstream import ANTHROPIC, OPENAI, Upstream
from llm_proxy.proxy.usage import Usage

# The client protocols (`Call.client`).
OPENAI_CLIENT: Final = "openai"
ANTHROPIC_CLIENT: Final = "anthropic"
GEMINI_CLIENT: Final = "gemini"

# The endpoints a call can be translated for: Anthropic's Messages for a chat-completions
# upstream, chat completions for an Anthropic upstream.
MESSAGES: Final = "/messages"
CHAT: Final = "/chat/completions"
EMBEDDINGS: Final = "/embeddings"
# What an Anthropic upstream serves: every other OpenAI endpoint is refused before it is sent.
ANTHROPIC_ENDPOINTS: Final = frozenset({MESSAGES, "/messages/count_tokens"})
# A translated JSON answer is read whole before it is translated: bounded.
MAX_ANSWER_BYTES: Final = 32 * 1024 * 1024

# An answer translator: the answer, and its usage (keyword `usage`) when read already.
_Answer = Callable[..., dict[str, Any]]
_Error = Callable[[int, bytes], bytes]
_Stream = Callable[[], StreamTranslator]


def _same(answer: dict[str, Any], usage: TokenUsage | None = None) -> dict[str, Any]:
    return answer


def _same_error(status: int, body: bytes) -> bytes:
    return body


@dataclass(slots=True)  # (made per request: not frozen, which costs twice)
class Translation:
    """One attempt's translation: where the translated request goes, and how its answer
    comes back."""

    endpoint: str  # the provider's endpoint (an OpenAI or Anthropic provider's)
    stream: _Stream  # for a successful event stream
    answer: _Answer  # for a successful JSON answer
    error: _Error  # an error answer's body, in the client's shape
    anthropic: bool  # the client speaks Anthropic's protocol
    # The usage a JSON answer (the provider's, untranslated) reports.
    usage: Callable[[dict[str, Any]], TokenUsage | None]
    target: CloudTarget | None = None  # a cloud provider's: where the call goes
    client: str = OPENAI_CLIENT  # the client's protocol
    # Only the request changed (an Anthropic client, a Vertex Claude model): the answer is
    # relayed as it comes, its usage read as an Anthropic answer's.
    as_is: bool = False


def as_usage(usage: TokenUsage | None) -> Usage | None:
    """The proxy's usage (OpenAI's meaning: cached tokens inside the prompt's)."""
    if usage is None:
        return None
    return Usage(usage.prompt_tokens, usage.output_tokens)


# The usage a JSON answer reports, by the provider's protocol.


def _openai_usage(answer: dict[str, Any]) -> TokenUsage | None:
    return from_openai(answer.get("usage"))


def _anthropic_usage(answer: dict[str, Any]) -> TokenUsage | None:
    return from_anthropic(answer.get("usage"))


def _converse_usage(answer: dict[str, Any]) -> TokenUsage | None:
    return converse.converse_usage(answer.get("usage"))


# The client's side (`_client_leg`): its request in the pivot's protocol (an Anthropic
# Messages request), and the way back: an Anthropic message -> the client's answer,
# Anthropic's stream -> the client's (None: it is the client's), an Anthropic error body ->
# the client's. (Plain tuples: these are made per request.)
_ClientLeg = tuple[dict[str, Any], _Answer, "_Stream | None", _Error]
# The provider's side (`_upstream_leg`): the request in its protocol, its endpoint and
# target, and the way back to the pivot (answer, stream, error, as the client's side), with
# how its JSON answer reports usage.
_UpstreamLeg = tuple[
    bytes,
    str,
    "CloudTarget | None",
    _Answer,
    "_Stream | None",
    _Error,
    Callable[[dict[str, Any]], TokenUsage | None],
]


def translate(
    client: str,
    upstream: Upstream,
    data: dict[str, Any],
    model: str,
    stream: bool = False,
    endpoint: str = CHAT,
) -> tuple[bytes, Translation] | None:
    """The request body for `upstream` and its translation, when the client's protocol
    (`client`) differs from the provider's for `model`; None when it does not. A request the
    provider's protocol cannot carry is a 400."""
    speaks = upstream.speaks(model)
    if client == speaks and upstream.cloud is None:
        return None
    if client == GEMINI_CLIENT and speaks == cloud.GEMINI:
        return None  # passed through (`Call.body_for`: the model is in the URL)
    try:
        if endpoint == EMBEDDINGS:
            return _embeddings(upstream, data, model)
        if client == ANTHROPIC_CLIENT and speaks == OPENAI:
            return _messages_via_chat(upstream, data, model)
        if client == OPENAI_CLIENT and speaks == ANTHROPIC and upstream.cloud is None:
            return _chat_via_messages(upstream, data, model)
        created = int(time.time())
        leg = _client_leg(client, upstream, data, model, stream, created)
        return _compose(client, leg, _upstream_leg(upstream, speaks, leg[0], model, stream))
    except TranslationError as exc:
        raise errors.bad_param(exc.param, exc.message) from None


def _messages_via_chat(
    upstream: Upstream, data: dict[str, Any], model: str
) -> tuple[bytes, Translation]:
    chat, call = messages_via_chat.chat_request(
        data, model=model, max_tokens_cap=upstream.max_output_tokens
    )
    # (Translation's fields in order, here and below: built per request, positional is cheaper)
    translation = Translation(
        CHAT,
        partial(MessagesStream, call),
        partial(message_answer, call=call),
        openai_to_anthropic,
        True,
        _openai_usage,
        None,
        ANTHROPIC_CLIENT,
        False,
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
        partial(ChatStream, call, created=created),
        partial(chat_via_messages.chat_answer, call=call, created=created),
        anthropic_to_openai,
        False,
        _anthropic_usage,
        None,
        OPENAI_CLIENT,
        False,
    )
    return orjson.dumps(messages), translation


def _client_leg(
    client: str, upstream: Upstream, data: dict[str, Any], model: str, stream: bool, created: int
) -> _ClientLeg:
    if client == OPENAI_CLIENT:
        request, chat_call = chat_via_messages.messages_request(
            data,
            model=model,
            default_max_tokens=upstream.default_max_tokens,
            max_tokens_cap=upstream.max_output_tokens,
        )
        return (
            request,
            partial(chat_via_messages.chat_answer, call=chat_call, created=created),
            partial(ChatStream, chat_call, created=created),
            anthropic_to_openai,
        )
    if client == GEMINI_CLIENT:
        request, gemini_call = gemini_client.messages_from_gemini(
            data, model=model, stream=stream, default_max_tokens=upstream.default_max_tokens
        )
        cap = upstream.max_output_tokens
        if cap is not None and request.get("max_tokens", 0) > cap:
            request["max_tokens"] = cap
        return (
            request,
            partial(gemini_client.gemini_answer, call=gemini_call),
            partial(GeminiFromMessages, gemini_call),
            gemini_client.anthropic_to_gemini_error,
        )
    request = dict(data)
    request["model"] = model
    return request, _same, None, _same_error


def _upstream_leg(
    upstream: Upstream, speaks: str, request: dict[str, Any], model: str, stream: bool
) -> _UpstreamLeg:
    """The provider's side (`speaks`: its protocol for the model)."""
    place = upstream.cloud
    if speaks == OPENAI:
        chat, chat_call = messages_via_chat.chat_request(
            request, model=model, max_tokens_cap=upstream.max_output_tokens
        )
        return (
            orjson.dumps(chat),
            CHAT,
            None,
            partial(message_answer, call=chat_call),
            partial(MessagesStream, chat_call),
            openai_to_anthropic,
            _openai_usage,
        )
    if speaks == ANTHROPIC:
        target = None
        if place is not None:  # Vertex: the model in the URL, the version in the body
            request = {k: v for k, v in request.items() if k != "model"}
            request["anthropic_version"] = cloud.VERTEX_ANTHROPIC_VERSION
            action = cloud.STREAM_RAW_PREDICT if stream else cloud.RAW_PREDICT
            target = place.call(model, action)
        else:
            request["model"] = model
        return orjson.dumps(request), MESSAGES, target, _same, None, _same_error, _anthropic_usage
    assert place is not None
    if speaks == cloud.GEMINI:
        body, gemini_call = gemini.gemini_request(request, model=model)
        action = cloud.STREAM_GENERATE if stream else cloud.GENERATE
        return (
            orjson.dumps(body),
            "",
            place.call(model, action),
            partial(gemini.messages_answer, call=gemini_call),
            partial(MessagesFromGemini, gemini_call),
            gemini.gemini_to_anthropic_error,
            gemini.gemini_usage,
        )
    body, converse_call = converse.converse_request(request, model=model)
    action = cloud.CONVERSE_STREAM if stream else cloud.CONVERSE
    return (
        orjson.dumps(body),
        "",
        place.call(model, action),
        partial(converse.messages_answer, call=converse_call),
        partial(MessagesFromConverse, converse_call),
        converse.bedrock_to_anthropic_error,
        _converse_usage,
    )


def _compose(client: str, near: _ClientLeg, far: _UpstreamLeg) -> tuple[bytes, Translation]:
    """The client's leg after the provider's: answers, streams and errors go through both."""
    _, client_answer, client_stream, client_error = near
    body, endpoint, target, upstream_answer, upstream_stream, upstream_error, usage = far

    def answer(body: dict[str, Any], usage: TokenUsage | None = None) -> dict[str, Any]:
        # (the usage is the provider's answer's; the pivot's says the same, unread again)
        return client_answer(upstream_answer(body, usage=usage), usage=usage)

    def error(status: int, body: bytes) -> bytes:
        return client_error(status, upstream_error(status, body))

    def stream() -> StreamTranslator:
        if upstream_stream is None:
            assert client_stream is not None
            return client_stream()
        if client_stream is None:
            return upstream_stream()
        return Chained(upstream_stream(), client_stream())

    as_is = upstream_stream is None and client_stream is None
    anthropic = client == ANTHROPIC_CLIENT
    return body, Translation(
        endpoint, stream, answer, error, anthropic, usage, target, client, as_is
    )


def _embeddings(upstream: Upstream, data: dict[str, Any], model: str) -> tuple[bytes, Translation]:
    """OpenAI's embeddings from an AI Studio provider (`embedContent`)."""
    place = upstream.cloud
    if place is None or place.protocol(model) != cloud.GEMINI or place.kind != "gemini":
        raise errors.ProxyError(
            400,
            f"The model `{model}` is served by provider {upstream.name!r}, which answers "
            "embeddings only as a Google AI Studio (gemini) provider.",
            code="unsupported_endpoint",
            param="model",
        )
    action, body = gemini_embeddings.embeddings_request(data, model=model)
    texts = len(body.get("requests", ())) or 1
    encoding = data.get("encoding_format") or "float"
    translation = Translation(
        EMBEDDINGS,
        stream=_no_stream,
        answer=lambda answer, usage=None: gemini_embeddings.embeddings_answer(
            answer, model=model, texts=texts, encoding_format=encoding
        ),
        error=lambda status, body: anthropic_to_openai(
            status, gemini.gemini_to_anthropic_error(status, body)
        ),
        anthropic=False,
        usage=_no_usage,
        target=place.call(model, action.lstrip(":")),
    )
    return orjson.dumps(body), translation


def _no_stream() -> StreamTranslator:
    raise errors.ProxyError(400, "Embeddings are not streamed.", code="invalid_value")


def _no_usage(answer: dict[str, Any]) -> TokenUsage | None:
    return None


class Chained:
    """Two stream translators in a row (a provider's stream to Anthropic's, Anthropic's to
    the client's): a `StreamTranslator` whose usage is the provider's, as the first reads it."""

    __slots__ = ("first", "second")

    def __init__(self, first: StreamTranslator, second: StreamTranslator) -> None:
        self.first = first
        self.second = second

    @property
    def usage(self) -> TokenUsage | None:
        return self.first.usage

    def feed(self, chunk: bytes) -> bytes:
        middle = self.first.feed(chunk)
        return self.second.feed(middle) if middle else b""

    def flush(self) -> bytes:
        return self.second.feed(self.first.flush()) + self.second.flush()

    def fail(self, message: str, type: str = "api_error") -> bytes:
        return self.second.fail(message, type)

    def ping(self) -> bytes:
        return self.second.ping()


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
    usage = translation.usage(answer)  # (read once: each step is given it)
    try:
        translated = translation.answer(answer, usage=usage)
    except ValueError as exc:  # an answer missing what its protocol promises
        raise errors.ProxyError(
            502,
            f"The upstream's answer cannot be translated: {exc}",
            type=errors.API_ERROR,
            code="upstream_error",
        ) from None
    return orjson.dumps(translated), as_usage(usage)
