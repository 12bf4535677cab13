"""The response cache's key: what makes two requests one entry (key order at any depth, `0`
and `0.0` at the top level, the answer's form where it converts) and what keeps them apart
(the endpoint, the model asked, the rule, the namespace and key, the query, any other byte of
meaning); and its memory store (an LRU bounded by bytes, expiry, purges, no work for the
garbage collector)."""

from __future__ import annotations

import gc
from typing import Any

import orjson
import pytest

from llm_proxy.config.model import CacheSettings
from llm_proxy.proxy.cache import Entry, MemoryStore, Policy, _name, canonical
from llm_proxy.proxy.keyring import KeyEntry

BODY: dict[str, Any] = {
    "model": "m",
    "messages": [{"role": "user", "content": "hi"}],
    "temperature": 0,
    "response_format": {"type": "json_schema", "json_schema": {"name": "a", "strict": True}},
}


def key_of(
    data: dict[str, Any],
    *,
    endpoint: str = "/chat/completions",
    model: str = "m",
    rule: str | None = None,
    key: KeyEntry | None = None,
    query: str = "",
    namespace: str = "key",
    exact: bool = False,
) -> str | bytes:
    policy = Policy(CacheSettings(enabled=True, namespace=namespace))  # type: ignore[arg-type]
    slot = policy.slot(endpoint, model, rule, key)
    assert slot is not None
    head = slot.streamed if data.get("stream") else slot.whole
    if query:
        head += query.encode() + b"\0"
    return _name(slot, head + canonical(data), exact)


def entry(name: str, secret: bytes) -> KeyEntry:
    return KeyEntry(name, secret, True, None, None, None, None)


def test_one_request_however_written() -> None:
    base = key_of(BODY)
    reordered = orjson.loads(
        b'{"response_format":{"json_schema":{"strict":true,"name":"a"},"type":"json_schema"},'
        b'"temperature":0.0,"messages":[{"content":"hi","role":"user"}],"model":"m"}'
    )
    assert key_of(reordered) == base
    assert key_of(reordered, exact=True) == key_of(BODY, exact=True)
    # A stream and a whole answer share the entry where they convert, not elsewhere.
    streamed = {**BODY, "stream": True, "stream_options": {"include_usage": True}}
    assert key_of(streamed) == key_of({**BODY, "stream": False}) == base
    messages = {**BODY, "max_tokens": 5}
    assert key_of({**messages, "stream": True}, endpoint="/messages") != key_of(
        messages, endpoint="/messages"
    )
    # (Looked for in temperature and top_p, then at the whole top level; never nested.)
    assert canonical({"top_p": 1.0, "b": 1.0, "a": [2.0]}) == b'{"a":[2.0],"b":1,"top_p":1}'
    assert canonical({"b": 1.0}) == b'{"b":1.0}'
    assert key_of({**BODY, "top_p": 1.0}) == key_of({**BODY, "top_p": 1})


@pytest.mark.parametrize(
    "change",
    [
        {"temperature": 0.1},
        {"messages": [{"role": "user", "content": "hi "}]},
        {"model": "alias"},
        {"seed": 1},
        {"user": "someone"},
    ],
)
def test_any_other_change_is_another_entry(change: dict[str, Any]) -> None:
    assert key_of({**BODY, **change}) != key_of(BODY)
    # (The memory backend names an entry by the bytes the hash is made of.)
    assert key_of({**BODY, **change}, exact=True) != key_of(BODY, exact=True)


def test_what_the_key_is_made_of_besides_the_body() -> None:
    base = key_of(BODY)
    assert key_of(BODY, endpoint="/completions") != base
    assert key_of(BODY, model="other") != base
    assert key_of(BODY, rule="eu") != base
    assert key_of(BODY, query="api-version=2024-10-21") != base
    alice, alice2, bob = entry("alice", b"1" * 32), entry("alice", b"2" * 32), entry("bob", b"1")
    mine = key_of(BODY, key=alice)
    assert isinstance(mine, str)
    assert mine.startswith("alice:m:") and str(key_of(BODY)).startswith("anonymous:m:")
    assert key_of(BODY, key=alice2, exact=True) != key_of(BODY, key=alice, exact=True)
    assert key_of(BODY, key=alice2) != mine  # the same name, another secret
    assert key_of(BODY, key=bob) != mine
    shared = key_of(BODY, key=alice, namespace="global")
    assert shared == key_of(BODY, key=bob, namespace="global")
    assert str(shared).startswith("global:m:")
    # Names are quoted: a namespace or model cannot forge another's prefix.
    odd = key_of(BODY, key=entry("a:b*", b"3"), model="m:x")
    assert str(odd).startswith("a%3Ab%2A:m%3Ax:")


def test_the_memory_store_is_an_lru_bounded_by_bytes_and_invisible_to_the_collector() -> None:
    store = MemoryStore(4000)

    def put(name: bytes, size: int, expires: float = 1e18) -> None:
        store.put(name, Entry(0.0, expires, b"{" + b" " * size, False, "p", "m"), "ns", "m")

    put(b"a", 1000)
    put(b"b", 1000)
    assert store.get(b"a", 1.0) is not None  # a: now the most recently used
    put(b"c", 1500)  # over 4000 bytes with the overhead: b, the least recently used, goes
    assert store.get(b"b", 1.0) is None and store.evictions == 1
    assert store.get(b"a", 1.0) is not None and store.get(b"c", 1.0) is not None
    put(b"d", 10, expires=5.0)
    assert store.get(b"d", 4.9) is not None and store.get(b"d", 5.0) is None  # expired
    store.put(b"e", Entry(0.0, 1e18, b"{}", False, "p", "other"), "other-ns", "other")
    assert store.purge("other-ns", None) == 1 and store.purge(None, "m") == 2
    assert len(store) == 0 and store.bytes == 0
    for i in range(100):
        put(b"k%d" % i, 1)
    gc.collect()
    gc.collect()  # (the inner tuples first, then the outer ones)
    assert not any(gc.is_tracked(kept) for kept in store._entries.values())
