"""Azure OpenAI clients on `/openai/deployments/{deployment}/...`: the deployment in the path
names the model, as Azure does, whatever the body says (another name, null, nothing). Driven
by the real clients that bind a deployment: the openai SDK's `AzureOpenAI(azure_deployment=)`
and langchain-openai's `AzureChatOpenAI`."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import openai
import orjson
import pytest
import structlog
from aiohttp import web

from llm_proxy.proxy.jsonbody import replace_model, with_model
from tests.helpers import ProxyFactory, eventually, make_config, provider, sample, scrape, serve
from tests.helpers.azure import API_VERSION, DEPLOYMENT, Fake, answer, azure_app, azure_provider

KEY = "sk-team-azure-0123456789"
UPSTREAM_CHAT = "gpt-4o-2024-08-06"  # what `gpt-4o` maps to
UPSTREAM_WHISPER = "whisper-1"  # what `whisper` maps to


def strict_openai(received: list[Any]) -> web.Application:
    """OpenAI as strict as the real one about `model`: a missing or null one is a 400, a name
    it does not serve a 404 `model_not_found`. `received` gets each model it was sent."""

    def refused(model: object) -> web.Response | None:
        received.append(model)
        if not isinstance(model, str):
            return web.json_response(
                {"error": {"message": "you must provide a model parameter", "code": None}},
                status=400,
            )
        if model not in (UPSTREAM_CHAT, UPSTREAM_WHISPER):
            return web.json_response(
                {"error": {"message": f"`{model}` does not exist", "code": "model_not_found"}},
                status=404,
            )
        return None

    async def chat(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        return refused(body.get("model")) or await answer(request, body)

    async def transcribe(request: web.Request) -> web.Response:
        form = await request.post()
        return refused(form.get("model")) or web.json_response({"text": "hello"})

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_post("/v1/audio/transcriptions", transcribe)
    return app


@pytest.fixture
async def openai_upstream() -> AsyncIterator[Fake]:
    received: list[Any] = []
    async with serve(strict_openai(received)) as url:
        yield Fake(url + "/v1", received)  # type: ignore[arg-type]


def config(api_base: str, tmp_path: Path | None = None, **key: Any) -> Any:
    top: dict[str, Any] = {}
    if tmp_path is not None:
        top["request_log"] = {
            "jsonl_path": str(tmp_path / "requests.jsonl"),
            "flush_interval_secs": 0.05,
        }
    return make_config(
        provider(
            "openai",
            api_base,
            {"gpt-4o": UPSTREAM_CHAT, "whisper": UPSTREAM_WHISPER, "gpt-4o-mini": None},
        ),
        master_keys=[{"name": "team", "key": KEY, **key}],
        **top,
    )


def azure_client(url: str, deployment: str = "gpt-4o") -> openai.AzureOpenAI:
    return openai.AzureOpenAI(
        azure_endpoint=url,
        azure_deployment=deployment,
        api_key=KEY,
        api_version=API_VERSION,
        max_retries=0,
    )


def sdk_chat(url: str, model: str) -> tuple[str, str]:
    """One answer and one stream from a client bound to the `gpt-4o` deployment that names
    another model in its calls."""
    with azure_client(url) as client:
        reply = client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": "hi"}]
        )
        stream = client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": "hi"}], stream=True
        )
        parts = [c.choices[0].delta.content or "" for c in stream if c.choices]
    return reply.choices[0].message.content or "", "".join(parts)


async def test_the_deployment_names_the_model_whatever_the_body_says(
    openai_upstream: Fake, start_proxy: ProxyFactory, tmp_path: Path
) -> None:
    url = await start_proxy(config(openai_upstream.url, tmp_path, allowed_models=["gpt-4o"]))
    answers = await asyncio.to_thread(sdk_chat, url, "something-else")
    assert answers == ("Hello from Azure", "Hello from Azure")
    assert openai_upstream.calls == [UPSTREAM_CHAT, UPSTREAM_CHAT]
    async with aiohttp.ClientSession() as http:
        families = await scrape(http, url)
    # Metrics, the request log and the key's allowed models all saw the deployment.
    chats = sample(
        families,
        "llm_proxy_requests_total",
        endpoint="/openai/deployments/{deployment}/chat/completions",
        model="gpt-4o",
        status_code="200",
    )
    assert chats == 2
    log = tmp_path / "requests.jsonl"
    await eventually(lambda: log.exists() and len(log.read_bytes().splitlines()) >= 2)
    records = [orjson.loads(line) for line in log.read_bytes().splitlines()]
    assert [(r["model"], r["model_sent"], r["status"]) for r in records] == [
        ("gpt-4o", UPSTREAM_CHAT, 200)
    ] * 2


async def test_a_deployment_the_key_may_not_use_is_refused_whatever_the_body_says(
    openai_upstream: Fake, start_proxy: ProxyFactory
) -> None:
    url = await start_proxy(config(openai_upstream.url, allowed_models=["gpt-4o"]))

    def call() -> None:
        with azure_client(url, "gpt-4o-mini") as client:
            client.chat.completions.create(model="gpt-4o", messages=[])

    with pytest.raises(openai.PermissionDeniedError) as refused:
        await asyncio.to_thread(call)
    assert refused.value.code == "model_not_allowed"
    assert "gpt-4o-mini" in refused.value.message
    assert openai_upstream.calls == []


@pytest.mark.parametrize(
    "body",
    [
        b'{"messages":[],"model":null,"n":1.50,"big":123456789012345678901}',
        b'{"model" : "other", "messages":[{"role":"user","content":"model"}],"n":1.50}',
        b'{"messages":[{"model":"x"}], "\\u006dodel": 5, "big":123456789012345678901}',
        b'{"messages":[]}',
        b"{ }",
    ],
)
async def test_the_rest_of_the_body_reaches_the_upstream_byte_for_byte(
    start_proxy: ProxyFactory, body: bytes
) -> None:
    received: list[bytes] = []

    async def chat(request: web.Request) -> web.Response:
        received.append(await request.read())
        return web.json_response({"choices": []})

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    async with serve(app) as upstream, aiohttp.ClientSession() as http:
        url = await start_proxy(config(upstream + "/v1"))
        async with http.post(
            url + f"/openai/deployments/gpt-4o/chat/completions?api-version={API_VERSION}",
            data=body,
            headers={"api-key": KEY, "Content-Type": "application/json"},
        ) as resp:
            assert resp.status == 200, await resp.text()
    assert len(received) == 1
    sent = orjson.loads(received[0])
    assert sent == {**orjson.loads(body.replace(b"\\u006dodel", b"model")), "model": UPSTREAM_CHAT}
    # Only the model's value changed (or the member was added first).
    expected = with_model(body, orjson.loads(body), UPSTREAM_CHAT)[0]
    assert received[0] == expected


def test_with_model_keeps_every_other_byte() -> None:
    cases = {
        b'{"model":null,"x":1.0}': b'{"model":"d","x":1.0}',
        b'{"a":{"model":"n"},"model" :  "other" ,"z":1e2}': (
            b'{"a":{"model":"n"},"model" :  "d" ,"z":1e2}'
        ),
        b'{"x":[1,{"model":2}]}': b'{"model":"d","x":[1,{"model":2}]}',
        b" { } ": b' {"model":"d" } ',
        b'{"\\u006dodel":["a"],"b":"\\u00e9"}': b'{"\\u006dodel":"d","b":"\\u00e9"}',
        '{"t":"h\u00e9","model":7}'.encode(): '{"t":"h\u00e9","model":"d"}'.encode(),
    }
    for body, expected in cases.items():
        data = orjson.loads(body)
        got, new = with_model(body, data, "d")
        assert got == expected, body
        assert new == {**data, "model": "d"}
        assert with_model(expected, orjson.loads(expected), "d")[0] == expected  # no change


def test_replace_model_changes_only_the_value() -> None:
    """The rename every mapped call gets: also byte for byte when the pair is ambiguous (the
    same `"model": "m"` nested in a message, an escaped key) or the new name has a backslash."""
    cases = {
        (b'{"a":{"model" : "m"},"model" : "m","n":1.50}', "up"): (
            b'{"a":{"model" : "m"},"model" : "up","n":1.50}'
        ),
        (b'{"\\u006dodel":"m","n":123456789012345678901}', "up"): (
            b'{"\\u006dodel":"up","n":123456789012345678901}'
        ),
        (b'{"model":  "m"}', "a\\b"): b'{"model":  "a\\\\b"}',
    }
    for (body, new), expected in cases.items():
        assert replace_model(body, "m", new) == expected, body
        assert orjson.loads(expected)["model"] == new


async def test_langchain_azure_chat_invokes_and_streams(
    openai_upstream: Fake, start_proxy: ProxyFactory
) -> None:
    """LangChain's AzureChatOpenAI sends `"model": null` beside its deployment."""
    from langchain_openai import AzureChatOpenAI

    url = await start_proxy(config(openai_upstream.url))

    def chat() -> tuple[str, str]:
        llm = AzureChatOpenAI(
            azure_deployment="gpt-4o",
            azure_endpoint=url,
            api_key=KEY,  # type: ignore[arg-type]
            api_version=API_VERSION,
            max_retries=0,
        )
        answer = llm.invoke("hi")
        streamed = "".join(str(chunk.content) for chunk in llm.stream("hi"))
        return str(answer.content), streamed

    assert await asyncio.to_thread(chat) == ("Hello from Azure", "Hello from Azure")
    assert openai_upstream.calls == [UPSTREAM_CHAT, UPSTREAM_CHAT]


async def test_an_azure_upstream_gets_the_mapped_deployment(start_proxy: ProxyFactory) -> None:
    """Azure clients in front, Azure behind: the client's deployment `gpt-4o` is the proxy's
    model, mapped to the upstream deployment (the fake Azure 404s any other)."""
    calls: list[Any] = []
    async with serve(azure_app(calls)) as upstream:
        url = await start_proxy(
            make_config(azure_provider(upstream), master_keys=[{"name": "t", "key": KEY}])
        )
        answers = await asyncio.to_thread(sdk_chat, url, "gpt-4o-mini")
    assert answers == ("Hello from Azure", "Hello from Azure")
    assert [c.path_qs.split("?")[0] for c in calls] == [
        f"/openai/deployments/{DEPLOYMENT}/chat/completions"
    ] * 2


async def test_an_upload_on_a_deployment_route_is_sent_under_the_deployment(
    openai_upstream: Fake, start_proxy: ProxyFactory
) -> None:
    url = await start_proxy(config(openai_upstream.url))

    def transcribe(model: str) -> str:
        with azure_client(url, "whisper") as client:
            audio = ("a.wav", io.BytesIO(b"RIFF" + b"\0" * 64), "audio/wav")
            return client.audio.transcriptions.create(model=model, file=audio).text

    assert await asyncio.to_thread(transcribe, "whisper") == "hello"
    assert await asyncio.to_thread(transcribe, "something-else") == "hello"
    assert openai_upstream.calls == [UPSTREAM_WHISPER, UPSTREAM_WHISPER]


async def test_a_form_without_a_model_gets_the_deployments(
    openai_upstream: Fake, start_proxy: ProxyFactory
) -> None:
    """Azure reads the model from the path, so a form may leave it out; a plain OpenAI
    provider behind needs the field: it is put first, the form's own parts following as sent."""
    url = await start_proxy(config(openai_upstream.url))

    def form() -> aiohttp.FormData:
        made = aiohttp.FormData()
        made.add_field("file", b"RIFF" + b"\0" * 64, filename="a.wav", content_type="audio/wav")
        made.add_field("language", "en")
        return made

    path = f"/openai/deployments/whisper/audio/transcriptions?api-version={API_VERSION}"
    async with (
        aiohttp.ClientSession() as http,
        http.post(url + path, data=form(), headers={"api-key": KEY}) as resp,
    ):
        assert (resp.status, await resp.json()) == (200, {"text": "hello"})
        # A deployment with a line break would be a part's header line: refused.
        bad = url + path.replace("whisper", "whisper%0D%0Ax")
        async with http.post(bad, data=form(), headers={"api-key": KEY}) as resp:
            assert resp.status == 400
            assert (await resp.json())["error"]["param"] == "model"
    assert openai_upstream.calls == [UPSTREAM_WHISPER]


async def test_refusals_log_the_deployment(
    openai_upstream: Fake, start_proxy: ProxyFactory
) -> None:
    """A 429 on a deployment route (the key's budget or rate) names the deployment."""
    once = {"requests_per_second": 0.001, "burst_size": 1}
    url = await start_proxy(config(openai_upstream.url, rate_limit=once))
    path = f"/openai/deployments/gpt-4o/chat/completions?api-version={API_VERSION}"
    async with aiohttp.ClientSession() as http:
        with structlog.testing.capture_logs() as logs:
            statuses = []
            for _ in range(2):
                async with http.post(
                    url + path, json={"model": None, "messages": []}, headers={"api-key": KEY}
                ) as resp:
                    statuses.append(resp.status)
    assert statuses == [200, 429]
    lines = [e for e in logs if e["event"] == "request"]
    assert [(e["status"], e["model"]) for e in lines] == [(200, "gpt-4o"), (429, "gpt-4o")]
