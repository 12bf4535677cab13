"""The canned failures of `tests.helpers.refusals` as the fakes answer them, classified as
`llm_proxy.protocols.refusals` must: FaultyUpstream's behaviours (OpenAI) and the answers
scripted for the fake Anthropic API. (Gemini's and Bedrock's knobs are tested with their
fakes, in test_gemini_upstream.py and test_bedrock_upstream.py.)"""

from __future__ import annotations

import aiohttp
import orjson

from llm_proxy.protocols.refusals import classify_answer, classify_error
from tests.helpers import serve
from tests.helpers.anthropic_upstream import KEY, VERSION, anthropic_upstream
from tests.helpers.refusals import error, refused, scripted
from tests.helpers.upstreams import FaultyUpstream

CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


async def test_faulty_upstream(http: aiohttp.ClientSession) -> None:
    up = FaultyUpstream().then("context_window", "content_policy", "content_filter", "ok")
    expected = [
        (400, "context_window"),
        (400, "content_policy"),
        (200, "content_policy"),
        (200, None),
    ]
    async with serve(up.app) as url:
        for status, reason in expected:
            async with http.post(f"{url}/v1/chat/completions", json=CHAT) as resp:
                assert resp.status == status
                body = await resp.read()
            if status == 400:
                assert classify_error("openai", status, body) == reason
            else:
                assert classify_answer("openai", body) == reason
        up.then("content_filter")
        async with http.post(f"{url}/v1/chat/completions", json={**CHAT, "stream": True}) as resp:
            assert resp.status == 200
            events = (await resp.read()).split(b"\n\n")
    chunk = orjson.loads(events[0].removeprefix(b"data: "))
    assert chunk["choices"] == [{"index": 0, "delta": {}, "finish_reason": "content_filter"}]
    assert events[1:] == [b"data: [DONE]", b""]
    assert up.seen == ["context_window", "content_policy", "content_filter", "ok", "content_filter"]


async def test_anthropic_scripted(http: aiohttp.ClientSession) -> None:
    headers = {"x-api-key": KEY, "anthropic-version": VERSION}
    body = {"model": "claude", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}
    async with anthropic_upstream() as fake:
        fake.answers += [
            scripted(*error("anthropic", "context_window")),
            scripted(*error("anthropic", "content_policy")),
            scripted(200, refused("anthropic")),
        ]
        seen = []
        for _ in range(4):
            async with http.post(f"{fake.url}/v1/messages", json=body, headers=headers) as resp:
                seen.append((resp.status, await resp.read()))
    assert [classify_error("anthropic", s, b) for s, b in seen[:2]] == [
        "context_window",
        "content_policy",
    ]
    assert [classify_answer("anthropic", b) for _, b in seen[2:]] == ["content_policy", None]
