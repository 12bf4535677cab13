"""Tool names an OpenAI-compatible upstream accepts. Anthropic allows names OpenAI rejects
(longer than 64 characters, or with characters outside `[a-zA-Z0-9_-]`: MCP tools are often
named `mcp__server__tool.name`); such a name is sent shortened, and the answer's tool calls
get the client's name back."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from typing import Final

# OpenAI's rule for a function name.
_VALID: Final = re.compile(r"[a-zA-Z0-9_-]{1,64}")
_INVALID_CHARACTER: Final = re.compile(r"[^a-zA-Z0-9_-]")
_HASH_LENGTH: Final = 8
# The readable part of a shortened name: 64 minus "_" and the hash.
_PREFIX_LENGTH: Final = 64 - 1 - _HASH_LENGTH


def upstream_name(name: str) -> str:
    """The name sent upstream for the client's tool `name`: itself when OpenAI accepts it,
    else its valid characters (others replaced by `_`), cut to 55 characters, then `_` and 8
    hex digits of its SHA-256. Deterministic (the same name in the tool list, in the history
    and in tool_choice becomes the same upstream name), and two different names collide only
    if their hashes do."""
    if _VALID.fullmatch(name):
        return name
    readable = _INVALID_CHARACTER.sub("_", name)[:_PREFIX_LENGTH]
    digest = hashlib.sha256(name.encode()).hexdigest()[:_HASH_LENGTH]
    return f"{readable}_{digest}"


class ToolNames:
    """The client's tool names seen in one request, and what each is called upstream. Built
    while the request is translated; its `restored` map (upstream name to the client's, only
    for names that changed) goes with the call to translate the answer."""

    __slots__ = ("_clients",)

    def __init__(self) -> None:
        self._clients: dict[str, str] = {}  # upstream name -> the client's name

    def upstream(self, name: str) -> str:
        """The upstream name for the client's `name`. A ValueError when it clashes with
        another name of the request (a valid name equal to another's shortened form)."""
        sent = upstream_name(name)
        first = self._clients.setdefault(sent, name)
        if first != name:
            raise ValueError(f"the tool names {first!r} and {name!r} clash once shortened")
        return sent

    @property
    def restored(self) -> dict[str, str]:
        if not self._clients:
            return {}
        return {sent: name for sent, name in self._clients.items() if sent != name}


def client_name(name: str, restored: Mapping[str, str]) -> str:
    """The client's name for a tool the upstream called `name` (a name that was not
    shortened comes back as is)."""
    return restored.get(name, name)
