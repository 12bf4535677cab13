"""Which kind of client sent a request, from its User-Agent: a small fixed set of labels, so
the `client` metric label stays bounded whatever clients send."""

from __future__ import annotations

from typing import Final

CLIENTS: Final = (
    "openai-python",
    "openai-node",
    "langchain",
    "llamaindex",
    "claude-code",
    "curl",
    "browser",
    "other",
)
# (substring of the lower-cased User-Agent, label), first match wins: frameworks before the SDK
# they are built on (LangChain's and LlamaIndex's calls carry the openai SDK's agent too).
_RULES: Final = (
    ("langchain", "langchain"),
    ("llama-index", "llamaindex"),
    ("llama_index", "llamaindex"),
    ("llamaindex", "llamaindex"),
    ("claude-code", "claude-code"),
    ("claude-cli", "claude-code"),
    ("openai/python", "openai-python"),
    ("openai/js", "openai-node"),
    ("openai-node", "openai-node"),
    ("curl/", "curl"),
    ("mozilla/", "browser"),
)
_CACHE_MAX: Final = 1024
_cache: dict[str, str] = {}


def client_label(user_agent: str | None) -> str:
    """One of CLIENTS. Agents seen are remembered (a bounded map: clients send a handful)."""
    if not user_agent:
        return "other"
    label = _cache.get(user_agent)
    if label is not None:
        return label
    lowered = user_agent.lower()
    label = next((name for needle, name in _RULES if needle in lowered), "other")
    if len(_cache) >= _CACHE_MAX:
        _cache.clear()
    _cache[user_agent] = label
    return label
