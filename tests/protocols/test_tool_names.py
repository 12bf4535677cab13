"""Tool names an OpenAI-compatible upstream accepts (`llm_proxy.protocols.tool_names`)."""

from __future__ import annotations

import re

import pytest

from llm_proxy.protocols.tool_names import ToolNames, client_name, upstream_name

OPENAI_NAME = re.compile(r"[a-zA-Z0-9_-]{1,64}")


@pytest.mark.parametrize("name", ["get_weather", "Bash", "a-b_c9", "x" * 64])
def test_a_valid_name_is_kept(name: str) -> None:
    assert upstream_name(name) == name


@pytest.mark.parametrize(
    "name",
    ["mcp__files__read.file", "x" * 65, "a b", "ünïcode", "mcp__server__" + "long_tool_" * 10, ""],
)
def test_an_invalid_name_is_shortened_deterministically(name: str) -> None:
    sent = upstream_name(name)
    assert OPENAI_NAME.fullmatch(sent)
    assert sent == upstream_name(name)


def test_names_alike_stay_apart() -> None:
    base = "mcp__server__" + "t" * 60
    assert upstream_name(base + "1") != upstream_name(base + "2")
    assert upstream_name("a.b") != upstream_name("a:b")
    assert upstream_name("a.b").startswith("a_b_")


def test_the_map_restores_only_shortened_names() -> None:
    names = ToolNames()
    assert names.upstream("plain") == "plain"
    dotted = names.upstream("read.file")
    assert names.upstream("read.file") == dotted  # the same name again: the same answer
    assert names.restored == {dotted: "read.file"}
    assert client_name(dotted, names.restored) == "read.file"
    assert client_name("plain", names.restored) == "plain"
    assert client_name("unknown", names.restored) == "unknown"


def test_a_clash_is_an_error() -> None:
    names = ToolNames()
    names.upstream("read.file")
    with pytest.raises(ValueError, match="clash"):
        names.upstream(upstream_name("read.file"))
    other = ToolNames()
    other.upstream(upstream_name("read.file"))
    with pytest.raises(ValueError, match="clash"):
        other.upstream("read.file")
