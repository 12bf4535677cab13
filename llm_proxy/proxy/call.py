"""One client call, as the handler validated it, and the body each candidate provider gets."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Final, NamedTuple

import orjson

from llm_proxy import errors
from llm_proxy.proxy.client import StreamedBody
from llm_proxy.proxy.cloud import CloudTarget
from llm_proxy.proxy.jsonbody import replace_model
from llm_proxy.proxy.routing import Target
from llm_proxy.proxy.translation import (
    ANTHROPIC_CLIENT,
    ANTHROPIC_ENDPOINTS,
    EMBEDDINGS,
    GEMINI_CLIENT,
    OPENAI_CLIENT,
    Translation,
    translate,
)
from llm_proxy.proxy.uploads import Upload
from llm_proxy.proxy.upstream import ANTHROPIC, Upstream
from llm_proxy.proxy.usage import UsageStripper, request_usage_in_stream

# Endpoints whose streams accept `stream_options.include_usage`.
USAGE_STREAMS: Final = frozenset({"/chat/completions", "/completions"})
# What an Anthropic provider answers: its own endpoints, and chat completions translated.
TRANSLATABLE: Final = ANTHROPIC_ENDPOINTS | {"/chat/completions"}
# What a cloud provider (gemini, vertex, bedrock) answers for OpenAI and Anthropic clients.
CLOUD_TRANSLATABLE: Final = frozenset({"/messages", "/chat/completions", EMBEDDINGS})


class Outgoing(NamedTuple):
    """What one attempt sends: the body, the filter its stream goes through, its
    translation, and (a cloud provider's) its target."""

    body: bytes | StreamedBody
    stripper: UsageStripper | None = None
    translation: Translation | None = None
    target: CloudTarget | None = None


@dataclass(slots=True)
class Call:
    endpoint: str  # "/chat/completions", ...
    body: bytes | Upload  # as the client sent it (an upload: spooled)
    data: dict[str, Any]  # the parsed body (read, never re-encoded)
    requested: str  # the model as requested
    name: str  # the model after PROVIDER_SUFFIX stripping
    stream: bool
    method: str = "POST"
    query: str = ""  # the client's query string, passed on (without `?`)
    # The kind of object the answer creates (file, batch, vector_store, response,
    # conversation): its id is remembered as owned by the provider that answered, and by
    # the key that asked.
    creates: str | None = None
    models: frozenset[str] | None = None  # a batch input file: the models its lines name
    # The answer is read whole (not relayed as it comes), so the handler can look at it
    # before the client does (object lists are filtered per key: llm_proxy.proxy.objects).
    inspect: bool = False
    # An upload whose form has no `model` (an Azure route, where the path names it): the
    # form's boundary, so each provider gets a `model` part put first.
    form_boundary: bytes | None = None
    anthropic: bool = False  # the client speaks Anthropic's Messages API (else OpenAI's)
    # The client speaks Gemini's API (`llm_proxy.proxy.generate`): the method in its URL
    # (generateContent, streamGenerateContent, countTokens, ...).
    gemini_action: str | None = None

    @property
    def client(self) -> str:
        """The client's protocol."""
        if self.anthropic:
            return ANTHROPIC_CLIENT
        return OPENAI_CLIENT if self.gemini_action is None else GEMINI_CLIENT

    def body_for(self, target: Target, upstream: Upstream) -> Outgoing:
        """The bytes to send to `target`: the model rewritten to its upstream name and, for
        streams, usage requested (with the stripper that hides it from the client); or, for
        a provider of another protocol, the request translated, with its translation."""
        model = target.model or self.name
        if self.gemini_action is not None or upstream.cloud is not None:
            return self._for_cloud(upstream, model)
        if self.anthropic or upstream.protocol == ANTHROPIC:
            translated = self._translated(upstream, model)
            if translated is not None:
                return Outgoing(translated[0], None, translated[1])
        if isinstance(self.body, Upload):
            upload = self.body
            if self.form_boundary is not None:
                part = _model_part(self.form_boundary, model)
                streamed = StreamedBody(len(part) + upload.size, lambda: _then(part, upload))
                return Outgoing(streamed)
            new = model.encode() if self.requested and model != self.requested else None
            length, replacement = upload.replaced(new)
            return Outgoing(StreamedBody(length, lambda: upload.chunks(replacement)))
        if not self.requested:
            return Outgoing(self.body)  # a call without a model: sent as it came
        body = (
            self.body
            if model == self.requested
            else replace_model(self.body, self.requested, model)
        )
        if self.stream and upstream.inject_stream_usage and self.endpoint in USAGE_STREAMS:
            body, added = request_usage_in_stream(body, self.data)
            return Outgoing(body, UsageStripper() if added else None)
        return Outgoing(body)

    def _for_cloud(self, upstream: Upstream, model: str) -> Outgoing:
        """A Gemini client's call (passed through to a provider speaking Gemini's API for the
        model, the model in the URL), or any call to a cloud provider (translated)."""
        if isinstance(self.body, Upload) or (
            self.gemini_action is None and self.endpoint not in CLOUD_TRANSLATABLE
        ):
            raise errors.ProxyError(
                400,
                f"The model `{self.requested}` is served by provider {upstream.name!r} "
                f"({upstream.provider_type}), which answers chat completions, embeddings "
                f"and the Messages API only, not {self.endpoint}.",
                code="unsupported_endpoint",
                param="model",
            )
        translated = translate(self.client, upstream, self.data, model, self.stream, self.endpoint)
        if translated is not None:
            body, translation = translated
            if translation.as_is:
                return Outgoing(body, None, None, translation.target)
            return Outgoing(body, None, translation, translation.target)
        # A Gemini client, a provider speaking Gemini's API: the body as it came.
        assert upstream.cloud is not None
        assert self.gemini_action is not None
        assert isinstance(self.body, bytes)
        body = self.body
        if model != self.requested and self.gemini_action in _NAMES_MODEL:
            body = orjson.dumps(_with_gemini_model(self.data, "models/" + model))
        return Outgoing(body, None, None, upstream.cloud.call(model, self.gemini_action))

    def _translated(self, upstream: Upstream, model: str) -> tuple[bytes, Translation] | None:
        """For a provider of the other protocol: the translated body and its translation.
        (An Anthropic provider serves only the Messages API: any other endpoint is a 400.)"""
        if upstream.protocol == ANTHROPIC and (
            self.endpoint not in TRANSLATABLE or isinstance(self.body, Upload)
        ):
            raise errors.ProxyError(
                400,
                f"The model `{self.requested}` is served by an Anthropic provider "
                f"({upstream.name!r}), which answers chat completions and the Messages "
                f"API only, not {self.endpoint}.",
                code="unsupported_endpoint",
                param="model",
            )
        return translate(self.client, upstream, self.data, model, self.stream, self.endpoint)


# Gemini methods whose body names the model again (each batch request, a count's request).
_NAMES_MODEL: Final = frozenset(("batchEmbedContents", "countTokens"))


def _with_gemini_model(data: dict[str, Any], name: str) -> dict[str, Any]:
    """A Gemini body whose inner `model` fields name `name` (the upstream's model): Google
    refuses a batch whose requests name another model than the URL."""
    out = dict(data)
    requests = out.get("requests")
    if isinstance(requests, list):
        out["requests"] = [
            {**r, "model": name} if isinstance(r, dict) and "model" in r else r for r in requests
        ]
    inner = out.get("generateContentRequest")
    if isinstance(inner, dict) and "model" in inner:
        out["generateContentRequest"] = {**inner, "model": name}
    return out


def _model_part(boundary: bytes, model: str) -> bytes:
    """A form's `model` field, as a part to put before its first one."""
    return b'--%s\r\nContent-Disposition: form-data; name="model"\r\n\r\n%s\r\n' % (
        boundary,
        model.encode(),
    )


async def _then(first: bytes, upload: Upload) -> AsyncIterator[bytes]:
    yield first
    async for chunk in upload.chunks():
        yield chunk
