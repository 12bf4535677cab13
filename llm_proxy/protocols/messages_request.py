"""Readers of an Anthropic Messages request, shared by the translators from it to other
upstream protocols (`messages_via_chat`, `gemini`, `converse`): content as a list of blocks,
a text block's text, a custom tool's name, and the refusal (a `TranslationError`) of a
block or a tool the upstream has no counterpart for, worded with the upstream's name
(`Target`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from llm_proxy.protocols.errors import TranslationError

# Claude Code's first system block: request accounting for Anthropic's service only.
BILLING_HEADER: Final = "x-anthropic-billing-header"
# Content blocks that only Anthropic's service serves (server tools, MCP servers, container
# uploads, search results): no other upstream has a counterpart for them.
UNSUPPORTED_BLOCKS: Final = {
    "search_result": "search_result blocks",
    "container_upload": "container_upload blocks",
    "server_tool_use": "server tool calls",
    "web_search_tool_result": "server tool results",
    "web_fetch_tool_result": "server tool results",
    "code_execution_tool_result": "server tool results",
    "bash_code_execution_tool_result": "server tool results",
    "text_editor_code_execution_tool_result": "server tool results",
    "mcp_tool_use": "MCP server tool calls",
    "mcp_tool_result": "MCP server tool results",
}


@dataclass(frozen=True, slots=True)
class Target:
    """The upstream a request is translated for, as its refusals name it."""

    name: str  # "Gemini", "Bedrock", "this model": "... are not supported by {name}"
    blocks: Mapping[str, str]  # the block types it refuses -> what the refusal calls them


def content_blocks(content: Any, where: str) -> list[dict[str, Any]]:
    """`content` as a list of blocks (a string is one text block)."""
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if not isinstance(content, list) or not all(isinstance(block, dict) for block in content):
        raise TranslationError(where, f"{where}: a string or a list of content blocks expected")
    return content


def text_of(block: dict[str, Any], where: str, target: Target) -> str:
    """The text of a block that must be a text block (a system block, a tool result's)."""
    kind = block.get("type")
    if kind != "text":
        if isinstance(kind, str) and kind in target.blocks:
            raise refused_block(kind, where, target)
        raise TranslationError(where, f"{where}: a text block expected, not {kind!r}")
    text = block.get("text")
    if not isinstance(text, str):
        raise TranslationError(f"{where}.text", f"{where}.text: a string is required")
    return text


def refused_block(kind: Any, where: str, target: Target) -> TranslationError:
    """The error (to raise) for a block of a type the translator has no use for where it
    stands: one the target has no counterpart for, or an unknown one."""
    what = target.blocks.get(kind) if isinstance(kind, str) else None
    if what is not None:
        return TranslationError(where, f"{where}: {what} are not supported by {target.name}")
    return TranslationError(where, f"{where}: unknown content block type {kind!r}")


def custom_tool(tool: Any, where: str, target: Target) -> str:
    """The name of a tool of `tools`, which must be a custom tool's (an object; a server tool
    is refused)."""
    if not isinstance(tool, dict):
        raise TranslationError(where, f"{where}: a tool must be an object")
    kind = tool.get("type")
    if kind not in (None, "custom"):
        raise TranslationError(
            f"{where}.type", f"{where}: the server tool {kind!r} is not supported by {target.name}"
        )
    name = tool.get("name")
    if not isinstance(name, str) or not name:
        raise TranslationError(f"{where}.name", f"{where}.name: a string is required")
    return name
