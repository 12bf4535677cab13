"""OpenAI `/v1/embeddings` clients served by Gemini's `embedContent` (one text) and
`batchEmbedContents` (a list of texts).

The request: `input` (a string, or a list of strings) becomes the content's text parts, one
request per text; `dimensions` becomes `outputDimensionality`; `user` is dropped. Token-id
inputs (lists of integers) are refused: Gemini embeds text only. The answer: Gemini's
vectors in OpenAI's list, as floats or, when the client asked for
`encoding_format: base64` (the OpenAI SDK's default), as base64 of little-endian float32.
"""

from __future__ import annotations

import base64
import struct
from typing import Any, Final

from llm_proxy.protocols.errors import TranslationError

EMBED: Final = ":embedContent"
BATCH_EMBED: Final = ":batchEmbedContents"


def embeddings_request(data: dict[str, Any], *, model: str) -> tuple[str, dict[str, Any]]:
    """The method (`:embedContent` for a string, `:batchEmbedContents` for a list) and the
    Gemini body for the OpenAI embeddings request `data`; a batch names `models/{model}` in
    each of its requests, as Gemini requires."""
    texts = _texts(data.get("input"))
    dimensions = data.get("dimensions")
    if dimensions is not None and (
        not isinstance(dimensions, int) or isinstance(dimensions, bool) or dimensions < 1
    ):
        raise TranslationError("dimensions", "dimensions: a positive integer is required")
    encoding = data.get("encoding_format")
    if encoding not in (None, "float", "base64"):
        raise TranslationError("encoding_format", "encoding_format: float or base64")

    def request(text: str) -> dict[str, Any]:
        body: dict[str, Any] = {"content": {"parts": [{"text": text}]}}
        if dimensions is not None:
            body["outputDimensionality"] = dimensions
        return body

    if isinstance(texts, str):
        return EMBED, request(texts)
    name = model if model.startswith("models/") else f"models/{model}"
    return BATCH_EMBED, {"requests": [{"model": name, **request(text)} for text in texts]}


def _texts(value: Any) -> str | list[str]:
    if isinstance(value, str):
        return value
    if isinstance(value, list) and value and all(isinstance(item, str) for item in value):
        return value
    if isinstance(value, list) and value:
        raise TranslationError(
            "input", "input: Gemini embeds text: token ids (lists of integers) are refused"
        )
    raise TranslationError("input", "input: a string or a non-empty list of strings")


def embeddings_answer(
    answer: dict[str, Any], *, model: str, texts: int, encoding_format: str = "float"
) -> dict[str, Any]:
    """Gemini's embedding answer (`{"embedding": {"values"}}` or `{"embeddings": [...]}`) as
    OpenAI's: `texts` vectors, in order; `encoding_format` as the client asked. Gemini reports
    no usage for embeddings: `prompt_tokens` is its `usageMetadata.promptTokenCount` when an
    answer has one, else 0. A ValueError when the answer does not hold `texts` vectors."""
    vectors = answer.get("embeddings")
    if not isinstance(vectors, list):
        vectors = [answer.get("embedding")]
    values = [vector.get("values") if isinstance(vector, dict) else None for vector in vectors]
    if len(values) != texts or not all(isinstance(vector, list) for vector in values):
        raise ValueError(f"the upstream answer does not hold {texts} embeddings")
    usage = answer.get("usageMetadata")
    tokens = usage.get("promptTokenCount") if isinstance(usage, dict) else None
    tokens = tokens if isinstance(tokens, int) and not isinstance(tokens, bool) else 0
    return {
        "object": "list",
        "data": [
            {"object": "embedding", "index": index, "embedding": _encode(vector, encoding_format)}
            for index, vector in enumerate(values)
        ],
        "model": model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }


def _encode(vector: Any, encoding_format: str) -> list[float] | str:
    if encoding_format != "base64":
        return list(vector)
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
