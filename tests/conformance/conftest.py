"""Fixtures of the conformance suite: the shared backend, the proxy in front of a server, and
a client that sends numbered chat requests and checks each answer."""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.conformance.servers import Server, python_server
from tests.helpers import ProxyFactory, make_config, provider

MODELS = {"m": None, "slow": None}
_ids = itertools.count()


@pytest.fixture(scope="module")
def conformance_tmp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("conformance")


@pytest.fixture(scope="module")
def backend(conformance_tmp: Path) -> Iterator[Server]:
    """The app that nginx and HAProxy front: uvicorn with httptools."""
    with python_server("uvicorn-httptools", conformance_tmp) as server:
        yield server


def new_id(prefix: str) -> str:
    return f"{prefix}-{next(_ids)}"


@dataclass
class Answer:
    status: int
    headers: Any
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode()


async def chat(
    http: aiohttp.ClientSession,
    proxy: str,
    request_id: str,
    *,
    stream: bool = False,
    model: str = "m",
    **extra: Any,
) -> Answer:
    body = {"model": model, "messages": [{"role": "user", "content": request_id}], **extra}
    if stream:
        body["stream"] = True
    async with http.post(proxy + "/v1/chat/completions", json=body, auto_decompress=False) as r:
        return Answer(r.status, r.headers, await r.read())


def assert_answered(answer: Answer, request_id: str, *, stream: bool) -> None:
    """The backend's answer to `request_id`, whole, and without the injected usage chunk."""
    assert answer.status == 200, answer.body[:500]
    assert "Content-Encoding" not in answer.headers
    if not stream:
        data = json.loads(answer.body)
        assert data["choices"][0]["message"]["content"] == request_id
        assert data["usage"]["total_tokens"] == 11
        return
    events = [e for e in answer.text.split("\n\n") if e]
    assert events[-1] == "data: [DONE]"
    deltas = [json.loads(e[6:]) for e in events[:-1]]
    text = "".join(d["choices"][0]["delta"]["content"] for d in deltas)
    assert text == "".join(f"{request_id}:{i};" for i in range(4))
    assert all("usage" not in d for d in deltas), "the injected usage chunk reached the client"


async def seen(http: aiohttp.ClientSession, server_url: str) -> dict[str, int]:
    """{request id: times the backend received it}."""
    async with http.get(server_url + "/_seen") as resp:
        assert resp.status == 200
        counts: dict[str, int] = await resp.json()
        return counts


def assert_once(counts: dict[str, int], ids: list[str]) -> None:
    """Each request reached the backend exactly once: none lost, none duplicated."""
    wrong = {i: counts.get(i, 0) for i in ids if counts.get(i, 0) != 1}
    assert not wrong, f"requests lost (0) or duplicated (>1): {wrong}"


async def start_in_front(start_proxy: ProxyFactory, api_base: str, **top: Any) -> str:
    """The proxy (in this process) with one provider at `api_base`."""
    return await start_proxy(make_config(provider("up", api_base, MODELS), **top))


async def burst(
    http: aiohttp.ClientSession, proxy: str, prefix: str, count: int, *, concurrent: bool
) -> list[str]:
    """`count` requests, half of them streamed; each answer checked; returns their ids."""
    ids = [new_id(prefix) for _ in range(count)]

    async def one(i: int, request_id: str) -> None:
        stream = i % 2 == 0
        answer = await chat(http, proxy, request_id, stream=stream)
        assert_answered(answer, request_id, stream=stream)

    if concurrent:
        await asyncio.gather(*(one(i, r) for i, r in enumerate(ids)))
    else:
        for i, r in enumerate(ids):
            await one(i, r)
    return ids
