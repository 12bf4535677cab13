"""Hostile input: random bodies, headers and paths thrown at a running proxy (hypothesis).

No 5xx may be the proxy's own fault (only upstream_unreachable/upstream_timeout, or an
upstream's answer passed through), no unhandled exception may reach the logs, and the
process's memory must stay flat.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import structlog
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from llm_proxy.app import create_app
from llm_proxy.testing.mock import MockOptions, create_mock_app
from tests.helpers import make_config, provider, serve

PATHS = ["/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/responses"]
KEY = "sk-fuzz-0123456789"


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj).encode()  # the stdlib: integers beyond 64 bits included


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
fields = st.sampled_from(
    ["model", "stream", "messages", "stream_options", "prompt", "input", "n", "max_tokens"]
) | st.text(max_size=10).filter(lambda k: not k.startswith("mock_"))
objects = st.dictionaries(fields, json_values, max_size=6)
with_model = st.builds(
    lambda obj, model, stream: {**obj, "model": model, **({"stream": stream} if stream else {})},
    objects,
    st.sampled_from(["gpt-4o", "gpt-4o-mini", "gpt-4.1-x", "nope", "Proxy/gpt-4o", ""])
    | st.text(max_size=12),
    st.sampled_from([None, True, False, "true", 1]),
)
bodies = st.one_of(
    st.binary(max_size=300),
    objects.map(_dumps),
    with_model.map(_dumps),
)
header_names = st.text(alphabet="abcdefghijklmnopqrstuvwxyz-", min_size=1, max_size=20)
header_values = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=60)
headers = st.dictionaries(header_names, header_values, max_size=5)


class Servers:
    """The mock upstream and the proxy on their own event loop, in a thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.stop: asyncio.Event | None = None
        self.port = 0
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        self.loop.run_until_complete(self._main())

    async def _main(self) -> None:
        self.stop = asyncio.Event()
        async with serve(create_mock_app(MockOptions(chunks=3))) as mock:
            config = make_config(
                provider(
                    "a", mock + "/v1", {"gpt-4o": None, "gpt-4o-mini": None, "gpt-4.1*": None}
                ),
                master_keys=[
                    {"name": "fuzz", "key": KEY, "rate_limit": {"requests_per_second": 1e6}}
                ],
                provider_suffix="Proxy",
            )
            async with serve(create_app(config)) as url:
                self.port = int(url.rsplit(":", 1)[1])
                self.ready.set()
                await self.stop.wait()

    def __enter__(self) -> Servers:
        self.thread.start()
        assert self.ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        assert self.stop is not None
        self.loop.call_soon_threadsafe(self.stop.set)
        self.thread.join(10)


@pytest.fixture(scope="module")
def servers() -> Iterator[Servers]:
    logged: list[dict[str, Any]] = []

    def capture(_: Any, __: str, event: dict[str, Any]) -> dict[str, Any]:
        logged.append(dict(event))
        raise structlog.DropEvent

    structlog.configure(processors=[capture])
    try:
        with Servers() as s:
            s.logged = logged  # type: ignore[attr-defined]
            yield s
    finally:
        structlog.reset_defaults()


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def send(
    port: int, method: str, path: str, body: bytes, extra: dict[str, str]
) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        hdrs = {"Authorization": f"Bearer {KEY}", **extra}
        conn.request(method, path, body=body, headers=hdrs)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


PROXY_5XX_CODES = {"upstream_unreachable", "upstream_timeout", "upstream_error"}


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    path=st.sampled_from([*PATHS, "/v1/models", "/health", "/v1/../etc", "/x"]),
    method=st.sampled_from(["POST", "POST", "POST", "GET", "PUT"]),
    body=bodies,
    extra=headers,
)
def test_fuzz_never_a_proxy_5xx(
    servers: Servers, path: str, method: str, body: bytes, extra: dict[str, str]
) -> None:
    extra.pop("content-length", None)
    extra.pop("transfer-encoding", None)
    extra.pop("authorization", None)
    extra.pop("expect", None)
    status, payload = send(servers.port, method, path, body, extra)
    assert status != 500 or b"internal_error" not in payload
    if status >= 500:
        try:
            code = orjson.loads(payload)["error"]["code"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            code = None  # an upstream's own answer, passed through
        assert code is None or code in PROXY_5XX_CODES, payload
    unhandled = [e for e in servers.logged if e.get("event") == "unhandled_error"]  # type: ignore[attr-defined]
    assert not unhandled, unhandled


def test_fuzz_memory_is_flat(servers: Servers) -> None:
    body = orjson.dumps(
        {"model": "gpt-4o", "stream": True, "messages": [{"role": "user", "content": "x"}]}
    )
    for _ in range(300):  # warm up caches and pools
        send(servers.port, "POST", "/v1/chat/completions", body, {})
    before = rss_mb()
    for i in range(2000):
        send(servers.port, "POST", PATHS[i % 4], body if i % 3 else b"{bad", {"X-I": str(i)})
    grown = rss_mb() - before
    print(f"RSS growth over 2,000 mixed requests: {grown:.1f} MB")
    assert grown < 20
