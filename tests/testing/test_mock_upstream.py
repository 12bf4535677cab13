"""The mock upstream speaks the OpenAI API the way the official SDK reads it, directly and
through the proxy."""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import aiohttp
import openai
import orjson

from llm_proxy.testing.mock import response_stream_events
from tests.helpers import Upstream, free_port, sdk
from tests.helpers.processes import stop, wait_until_up

RESPONSE_EVENTS = [
    "response.created",
    "response.in_progress",
    "response.output_item.added",
    "response.content_part.added",
    *["response.output_text.delta"] * 3,
    "response.output_text.done",
    "response.content_part.done",
    "response.output_item.done",
    "response.completed",
]


def client(base: str) -> openai.AsyncOpenAI:
    return sdk(base)


async def test_responses_stream_direct_and_through_the_proxy(
    upstream: Upstream, proxy_url: str
) -> None:
    for base in (upstream.url, proxy_url):
        async with client(base) as sdk:
            stream = await sdk.responses.create(
                model="gpt-4.1", input="count", stream=True, extra_body={"mock_chunks": 3}
            )
            events = [event async for event in stream]
        assert [e.type for e in events] == RESPONSE_EVENTS, base
        assert [e.sequence_number for e in events] == list(range(len(RESPONSE_EVENTS)))
        deltas = [e.delta for e in events if e.type == "response.output_text.delta"]
        assert deltas == ["tok0 ", "tok1 ", "tok2 "]
        done = events[-1]
        assert done.type == "response.completed"
        assert done.response.output_text == "tok0 tok1 tok2 "
        assert done.response.usage is not None
        assert (done.response.usage.input_tokens, done.response.usage.output_tokens) == (4, 3)
        assert done.response.usage.total_tokens == 7


async def test_responses_stream_helper_rebuilds_the_response(
    upstream: Upstream, proxy_url: str
) -> None:
    for base in (upstream.url, proxy_url):
        async with (
            client(base) as sdk,
            sdk.responses.stream(
                model="gpt-4.1", input="count", extra_body={"mock_chunks": 4}
            ) as stream,
        ):
            snapshots = [
                event.snapshot
                async for event in stream
                if event.type == "response.output_text.delta"
            ]
            final = await stream.get_final_response()
        assert snapshots == ["tok0 ", "tok0 tok1 ", "tok0 tok1 tok2 ", "tok0 tok1 tok2 tok3 "]
        assert final.output_text == "tok0 tok1 tok2 tok3 "
        assert final.status == "completed"


async def test_responses_stream_wire_format(
    upstream: Upstream, http: aiohttp.ClientSession
) -> None:
    """`event: <type>` then `data: <json>`, blank-line separated with bare LFs (as OpenAI sends
    them; the proxy's relay frames events on blank lines)."""
    body = {"model": "m", "input": "x", "stream": True, "mock_chunks": 2}
    async with http.post(upstream.url + "/v1/responses", json=body) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/event-stream")
        raw = await resp.read()
    expected = b"".join(
        b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"
        for kind, data in response_stream_events("m", 2)
    )
    assert raw == expected
    assert b"\r" not in raw


async def test_responses_non_streaming_usage_adds_up(upstream: Upstream) -> None:
    async with client(upstream.url) as sdk:
        resp = await sdk.responses.create(
            model="m", input="x", extra_body={"mock_content": "one two three"}
        )
    assert resp.output_text == "one two three"
    assert resp.usage is not None
    assert resp.usage.total_tokens == resp.usage.input_tokens + resp.usage.output_tokens == 7


def test_client_hang_up_mid_stream_is_not_an_error(tmp_path: Path) -> None:
    """A client (or a proxy whose client left) closing a stream early is routine: the mock, run
    as `llm-proxy mock-upstream` runs it, logs no traceback for it."""
    port = free_port()
    log = tmp_path / "mock.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "llm_proxy", "mock-upstream", "--port", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_until_up(f"http://127.0.0.1:{port}/v1/models", proc, log)
        for path, body in (
            ("/v1/chat/completions", {"model": "m", "stream": True}),
            ("/v1/responses", {"model": "m", "input": "x", "stream": True}),
        ):
            request = urllib.request.Request(
                f"http://127.0.0.1:{port}{path}",
                data=orjson.dumps({**body, "mock_chunks": 50, "mock_delay_ms": 10}),
            )
            with urllib.request.urlopen(request, timeout=5) as resp:
                assert resp.readline()  # the stream has started; then hang up
        # Real time: the mock's next writes meet the closed connection, and what must not
        # happen then (a traceback) has no event to wait for.
        time.sleep(0.3)
    finally:
        stop(proc)
    output = log.read_text()
    assert "mock upstream on" in output
    assert "Traceback" not in output and "Error handling request" not in output, output


def _post(url: str, body: dict[str, Any], headers: dict[str, str]) -> tuple[int, str, bytes]:
    """(status, its retry-after header, body) of a POST, an error status included."""
    request = urllib.request.Request(url, data=orjson.dumps(body), headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=5) as resp:
            return resp.status, resp.headers.get("retry-after", ""), resp.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers.get("retry-after", ""), error.read()


def test_command_line_options(tmp_path: Path) -> None:
    """`llm-proxy mock-upstream`'s Anthropic and quirk options reach the instance."""
    port = free_port()
    log = tmp_path / "mock.log"
    options = "--anthropic-key sk-ant-k --tool none --fail-status 529 --fail-times 1"
    options += " --retry-after 2 --record"
    options += " --error-after 1 --chunks 2 --delay-ms 0 --quirks no-done,usage-null"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "llm_proxy",
                "mock-upstream",
                "--port",
                str(port),
                *options.split(),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_until_up(f"http://127.0.0.1:{port}/v1/models", proc, log)
        messages = f"http://127.0.0.1:{port}/v1/messages"
        ask = {"model": "c", "max_tokens": 9, "messages": [{"role": "user", "content": "x"}]}
        version = {"anthropic-version": "2023-06-01"}
        assert _post(messages, ask, version)[0] == 401
        keyed = {**version, "x-api-key": "sk-ant-k"}
        status, retry_after, body = _post(messages, ask, keyed)
        assert (status, retry_after) == (529, "2")
        assert orjson.loads(body)["error"]["type"] == "overloaded_error"
        status, _, body = _post(messages, {**ask, "stream": True}, keyed)
        assert status == 200
        assert body.count(b"event: content_block_delta") == 1
        assert body.endswith(b'"message":"Overloaded"}}\n\n')
        chat = f"http://127.0.0.1:{port}/v1/chat/completions"
        status, _, body = _post(chat, {"model": "m", "stream": True}, {})
        assert status == 200 and b"[DONE]" not in body
        assert body.count(b'"usage":null') == 4  # the role, 2 content and the finish chunks
        # --record: what it received, headers and bodies, credentials cut to their end.
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/mock/requests", timeout=5) as r:
            seen = orjson.loads(r.read())
        assert [(item["method"], item["path"]) for item in seen][:2] == [
            ("POST", "/v1/messages"),
            ("POST", "/v1/messages"),
        ]
        headers = {name.lower(): value for name, value in seen[1]["headers"].items()}
        assert headers["x-api-key"] == "...nt-k"
        assert headers["anthropic-version"] == "2023-06-01"
        assert seen[1]["body"] == ask
    finally:
        stop(proc)
