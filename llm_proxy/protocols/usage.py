"""Token usage as both protocols report it. OpenAI's `prompt_tokens` include the cached ones
(`prompt_tokens_details.cached_tokens`); Anthropic's `input_tokens` exclude both what was
read from its cache (`cache_read_input_tokens`) and what was written to it
(`cache_creation_input_tokens`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
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
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def from_openai(usage: Any) -> TokenUsage | None:
    """OpenAI's `usage` object (None, or not an object: None)."""
    if not isinstance(usage, dict):
        return None
    prompt = _int(usage.get("prompt_tokens"))
    details = usage.get("prompt_tokens_details")
    cached = _int(details.get("cached_tokens")) if isinstance(details, dict) else 0
    cached = min(cached, prompt)
    return TokenUsage(prompt - cached, _int(usage.get("completion_tokens")), cached)


def from_anthropic(usage: Any, base: TokenUsage | None = None) -> TokenUsage | None:
    """Anthropic's `usage` object; `base`: what an earlier event reported (a stream's
    `message_start`), whose fields a later `message_delta` updates where it has them."""
    if not isinstance(usage, dict):
        return base
    old = base or TokenUsage(0, 0)

    def field(name: str, default: int) -> int:
        return _int(usage[name]) if usage.get(name) is not None else default

    return TokenUsage(
        field("input_tokens", old.input_tokens),
        field("output_tokens", old.output_tokens),
        field("cache_read_input_tokens", old.cache_read_tokens),
        field("cache_creation_input_tokens", old.cache_write_tokens),
    )
