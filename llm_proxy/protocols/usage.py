"""Token usage as both protocols report it. OpenAI's `prompt_tokens` include the cached ones
(`prompt_tokens_details.cached_tokens`); Anthropic's `input_tokens` exclude both what was
read from its cache (`cache_read_input_tokens`) and what was written to it
(`cache_creation_input_tokens`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(slots=True)  # (not frozen: a frozen dataclass is twice as slow to make)
class TokenUsage:
    input_tokens: int  # Anthropic's meaning: not read from nor written to the cache
    output_tokens: int
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0

    @property
    def prompt_tokens(self) -> int:
        """OpenAI's meaning: every input token, cached or not."""
        return self.input_tokens + self.cache_read_tokens + self.cache_write_tokens

    def openai(self) -> dict[str, Any]:
        """OpenAI's `usage` object."""
        usage: dict[str, Any] = {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.output_tokens,
            "total_tokens": self.prompt_tokens + self.output_tokens,
        }
        if self.cache_read_tokens or self.cache_write_tokens:
            usage["prompt_tokens_details"] = {"cached_tokens": self.cache_read_tokens}
        return usage

    def anthropic(self) -> dict[str, Any]:
        """Anthropic's `usage` object."""
        return {
            "input_tokens": self.input_tokens,
            "cache_creation_input_tokens": self.cache_write_tokens,
            "cache_read_input_tokens": self.cache_read_tokens,
            "output_tokens": self.output_tokens,
        }


def _int(value: Any) -> int:
    # (`type(...) is int`: a bool is not a count)
    return value if type(value) is int and value > 0 else 0


def from_openai(usage: Any) -> TokenUsage | None:
    """OpenAI's `usage` object (None, or not an object: None)."""
    if type(usage) is not dict:
        return None
    prompt = _int(usage.get("prompt_tokens"))
    details = usage.get("prompt_tokens_details")
    cached = _int(details.get("cached_tokens")) if type(details) is dict else 0
    if cached > prompt:
        cached = prompt
    return TokenUsage(prompt - cached, _int(usage.get("completion_tokens")), cached)


def from_anthropic(usage: Any, base: TokenUsage | None = None) -> TokenUsage | None:
    """Anthropic's `usage` object; `base`: what an earlier event reported (a stream's
    `message_start`), whose fields a later `message_delta` updates where it has them."""
    if type(usage) is not dict:
        return base
    get = usage.get
    tokens = [get("input_tokens"), get("output_tokens"), get("cache_read_input_tokens")]
    tokens.append(get("cache_creation_input_tokens"))
    if base is not None:  # a field absent (or null) keeps the earlier event's count
        old = (base.input_tokens, base.output_tokens, base.cache_read_tokens)
        for index, earlier in enumerate((*old, base.cache_write_tokens)):
            if tokens[index] is None:
                tokens[index] = earlier
    # (`_int` of each, inline)
    return TokenUsage(*[n if type(n) is int and n > 0 else 0 for n in tokens])
