"""Moderations (an input containing `FLAG` is flagged) and a Cohere/Jina-style `POST /v1/rerank`
(documents scored by the query words they share)."""

from __future__ import annotations

from typing import Any, Final

from aiohttp import web

from llm_proxy.testing.mock.errors import MockError
from llm_proxy.testing.mock.state import OPTIONS
from llm_proxy.testing.mock.wire import json_response, read_json, required

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
    data = await read_json(request)
    value = required(data, "input")
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        texts = value
    elif isinstance(value, list):
        texts = [" ".join(str(v.get("text", "")) for v in value if isinstance(v, dict))]
    else:
        texts = [str(value)]
    return json_response(
        {
            "id": f"modr-{request.app[OPTIONS].name}",
            "model": data.get("model") or "omni-moderation-latest",
            "results": [_moderation(text) for text in texts],
        }
    )


async def rerank(request: web.Request) -> web.Response:
    """Cohere/Jina-style: documents scored by the query words they share, best first."""
    data = await read_json(request)
    model = required(data, "model")
    query = str(required(data, "query"))
    documents = required(data, "documents")
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
    return json_response(
        {
            "id": f"rerank-{request.app[OPTIONS].name}",
            "model": model,
            "results": results,
            "usage": {"total_tokens": tokens},
            "meta": {"billed_units": {"search_units": 1}},
        }
    )
