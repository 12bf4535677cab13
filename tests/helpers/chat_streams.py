"""OpenAI chat-completions streams, written and generated: for the translators that read
them (`llm_proxy.protocols.messages_stream`) and their tests."""

from __future__ import annotations

import json
from typing import Any

import orjson
from hypothesis import strategies as st


def sse(*chunks: dict[str, Any] | str) -> bytes:
    return b"".join(
        b"data: " + (item.encode() if isinstance(item, str) else orjson.dumps(item)) + b"\n\n"
        for item in chunks
    )


def chunk(
    delta: dict[str, Any] | None = None, finish: str | None = None, **fields: Any
) -> dict[str, Any]:
    choice: dict[str, Any] = {
        "index": 0,
        "delta": {} if delta is None else delta,
        "finish_reason": finish,
    }
    return {"id": "chatcmpl-7", "model": "qwen3", "choices": [choice], **fields}


def tool(
    index: int, arguments: str, id: str | None = None, name: str | None = None
) -> dict[str, Any]:
    fragment: dict[str, Any] = {"index": index, "function": {"arguments": arguments}}
    if id is not None:
        fragment["id"] = id
        fragment["type"] = "function"
    if name is not None:
        fragment["function"]["name"] = name
    return fragment


texts = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=12)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-1000, 1000) | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=6,
)
RANK = {"reasoning_content": 0, "reasoning": 0, "content": 1, "tool_calls": 2}
arguments = st.dictionaries(st.text(max_size=6), json_values, max_size=4)


@st.composite
def upstream_streams(draw: st.DrawFn) -> tuple[bytes, dict[str, Any]]:
    """A random valid chat-completions stream, and what the client must end up with."""
    reasoning = draw(st.lists(texts, max_size=3))
    text = draw(st.lists(texts, max_size=3))
    calls = draw(st.lists(arguments, max_size=3))
    # Each call's arguments in fragments; the first carries the id and the name.
    fragments: list[list[dict[str, Any]]] = []
    for index, value in enumerate(calls):
        encoded = json.dumps(value, ensure_ascii=draw(st.booleans()))
        cuts = sorted(draw(st.lists(st.integers(0, len(encoded)), max_size=4)))
        pieces = [
            encoded[start:end] for start, end in zip([0, *cuts], [*cuts, len(encoded)], strict=True)
        ]
        first = tool(index, pieces[0], f"call_{index}", f"tool_{index}")
        fragments.append([first] + [tool(index, piece) for piece in pieces[1:]])
    # Calls interleaved at random, each in its own order, starting in the order of their index
    # (the client's blocks follow the order calls first appear).
    tool_fragments: list[dict[str, Any]] = []
    queues = [list(queue) for queue in fragments]
    started = 0
    while any(queues):
        choices = [number for number in range(min(started + 1, len(queues))) if queues[number]]
        number = draw(st.sampled_from(choices))
        started = max(started, number + 1)
        tool_fragments.append(queues[number].pop(0))
    reasoning_key = draw(st.sampled_from(["reasoning_content", "reasoning"]))  # vLLM, OpenRouter
    items: list[tuple[str, Any]] = (
        [(reasoning_key, part) for part in reasoning]
        + [("content", part) for part in text]
        + [("tool_calls", fragment) for fragment in tool_fragments]
    )
    # Items share a chunk at random, in the order a delta is read: reasoning, text, tools.
    chunks: list[dict[str, Any]] = []
    if draw(st.booleans()):
        chunks.append(chunk({"role": "assistant", "content": ""}))
    joinable = False
    for kind, value in items:
        delta: dict[str, Any] = chunks[-1]["choices"][0]["delta"] if joinable else {}
        if (
            not delta
            or not draw(st.booleans())
            or (kind != "tool_calls" and kind in delta)
            or any(RANK[present] > RANK[kind] for present in delta)
        ):
            delta = {}
            chunks.append(chunk(delta, **({"usage": None} if draw(st.booleans()) else {})))
            joinable = True
        if kind == "tool_calls":
            delta.setdefault("tool_calls", []).append(value)
        else:
            delta[kind] = value
    usage = {
        "prompt_tokens": draw(st.integers(0, 10**6)),
        "completion_tokens": draw(st.integers(0, 10**5)),
    }
    placement = draw(st.sampled_from(["with_finish", "after_finish", "none"]))
    finish = "tool_calls" if calls else draw(st.sampled_from(["stop", "length"]))
    chunks.append(chunk({}, finish, **({"usage": usage} if placement == "with_finish" else {})))
    if placement == "after_finish":
        chunks.append({"id": "chatcmpl-7", "choices": [], "usage": usage})
    raw = sse(*chunks) + (sse("[DONE]") if draw(st.booleans()) else b"")
    expected = {
        "thinking": "".join(reasoning),
        "text": "".join(text),
        "tools": [(f"call_{index}", f"tool_{index}", value) for index, value in enumerate(calls)],
        "usage": usage if placement != "none" else None,
        "stop_reason": {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use"}[
            finish
        ],
    }
    return raw, expected
