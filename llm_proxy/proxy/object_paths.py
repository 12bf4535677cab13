"""The upstream path and query of an object call, rebuilt from what the router matched: the
collection, then each segment of the client's path decoded, checked and percent-encoded as
one segment, so that nothing a client sends can resolve to another path of the provider
(`/v1/files/x/../../chat/completions`, `%2e%2e`, `..%2f`, a backslash: a 400). Tested in
tests/proxy/test_objects.py, over the whole route table."""

from __future__ import annotations

from typing import Final
from urllib.parse import quote, unquote

from aiohttp import web

from llm_proxy import errors

# A segment is checked decoded once, twice, ...: an upstream may decode it again.
_DECODINGS: Final = 4
_UNSAFE_QUERY: Final = frozenset(chr(c) for c in (*range(0x21), 0x7F))
# Every visible ASCII character stays as the client sent it; others are percent-encoded.
_QUERY_SAFE: Final = "".join(chr(c) for c in range(0x21, 0x7F))


def object_segments(request: web.Request) -> list[str]:
    """The path's segments after the collection (the id, then the rest), each decoded and
    checked: an empty or dot segment (`.`, `..`, in any encoding, decoded any number of
    times), one holding a slash, a backslash or a control character is a 400."""
    resource = request.match_info.route.resource
    canonical = resource.canonical if resource is not None else ""
    skip = 3 if canonical.startswith("/v1/") else 2  # "", ["v1",] collection
    # rel_url keeps `%2F` encoded: a segment is what the router matched as one.
    raw = request.rel_url.raw_path.split("/")[skip:]
    return [_segment(s) for s in raw]


def _segment(raw: str) -> str:
    value = unquote(raw, errors="surrogateescape")
    level = value
    for _ in range(_DECODINGS):
        if level in ("", ".", "..") or "/" in level or "\\" in level or not level.isprintable():
            raise errors.ProxyError(
                400,
                f"Invalid path segment {raw[:60]!r}: an object path holds ids and names "
                "only (no empty or dot segments, slashes, backslashes or control characters).",
                code="invalid_path",
            )
        decoded = unquote(level, errors="surrogateescape")
        if decoded == level:
            break
        level = decoded
    return value


def upstream_path(collection: str, segments: list[str]) -> str:
    """The path the provider gets after its `/v1`: the collection, then each segment
    percent-encoded as one segment."""
    return (
        "/"
        + collection
        + "".join("/" + quote(s, safe="", errors="surrogateescape") for s in segments)
    )


def client_query(request: web.Request) -> str:
    """The client's query string as it was sent (encoded; `+` stays `+`); a 400 for a space
    or control character, which would break the upstream's request line."""
    raw = request.rel_url.raw_query_string
    if not raw:
        return ""
    if not _UNSAFE_QUERY.isdisjoint(raw):
        raise errors.ProxyError(
            400,
            "The query string holds a space or a control character: percent-encode it.",
            code="invalid_query",
        )
    return raw if raw.isascii() else quote(raw, safe=_QUERY_SAFE, errors="surrogateescape")
