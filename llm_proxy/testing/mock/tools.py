"""What both protocols' answers are made of: text cut in stream pieces (`pieces`), a tool call's
arguments made from the tool's JSON schema (`schema_value`), and which tools an answer calls
(`chosen_tools`, as `MockOptions.tool` says). Pure and deterministic."""

from __future__ import annotations

from typing import Any, Final

THINKING: Final = "Thinking it over."  # the text of a thinking block or of reasoning deltas


def pieces(text: str, count: int) -> tuple[str, ...]:
    """`text` in `count` near-equal non-empty pieces (fewer when it is shorter)."""
    count = max(1, min(count, len(text)))
    size, extra = divmod(len(text), count)
    out, start = [], 0
    for index in range(count):
        end = start + size + (1 if index < extra else 0)
        out.append(text[start:end])
        start = end
    return tuple(out)


def schema_value(schema: Any, name: str = "") -> Any:
    """A deterministic value of a JSON schema: an object's required properties filled (a
    `command` string is "echo mock", another string "mock"), an enum's first value."""
    if not isinstance(schema, dict):
        return "mock"
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return schema["enum"][0]
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "string")
    if kind == "object" or "properties" in schema:
        properties = schema.get("properties") or {}
        required = [n for n in schema.get("required") or [] if isinstance(n, str)]
        return {key: schema_value(properties.get(key), key) for key in required}
    if kind == "array":
        return []
    if kind in ("integer", "number"):
        return 1
    if kind == "boolean":
        return True
    return "echo mock" if name == "command" else "mock"


def chosen_tools(
    tools: list[dict[str, Any]], preferred: str, forced: str | None = None, count: int = 1
) -> list[dict[str, Any]]:
    """The `count` tools an answer calls, from those offered (each a dict with a "name"):
    `forced` (a tool choice naming one) repeated; else by `preferred` (`MockOptions.tool`):
    "none" calls none, a name offered that tool repeated, "first" (or a name not offered) the
    first offered ones in order (the first repeated when fewer are offered)."""
    by_name = {tool["name"]: tool for tool in tools}
    if not tools or (preferred == "none" and forced is None):
        return []
    name = forced if forced is not None else preferred
    if name in by_name:
        return [by_name[name]] * count
    if forced is not None:
        return []
    return [tools[index] if index < len(tools) else tools[0] for index in range(count)]
