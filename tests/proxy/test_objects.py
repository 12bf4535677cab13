"""Object routes (`llm_proxy.proxy.objects`): the upstream path is rebuilt segment by segment
(the whole route table through a property test against a fake upstream that records the raw
path it received), the client's query string goes as sent, and objects belong to the key that
created them: a two-tenant scenario for every collection, lists filtered per key, batches held
to the key's models and charged to its budget, and the same isolation across two instances
in database mode."""

from __future__ import annotations

import asyncio
import io
import socket
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

import aiohttp
import openai
import pytest
import uvloop
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from yarl import URL

from llm_proxy.app import OBJECT_COLLECTIONS, create_app
from llm_proxy.testing.mock import MockOptions, create_mock_app
from tests.helpers import ProxyFactory, make_config, provider, sdk, serve

# -- The upstream path stays under its collection ------------------------------------------------


def object_routes() -> list[str]:
    """Every object route of the real route table (with and without /v1, responses/{id})."""
    config = make_config(provider("only", "http://127.0.0.1:9/v1", {"m": None}))
    routes = []
    for resource in create_app(config).router.resources():
        parts = resource.canonical.removeprefix("/v1").split("/")
        collection = parts[1] if len(parts) > 1 else ""
        by_id = collection in (*OBJECT_COLLECTIONS, "responses") and "{" in resource.canonical
        if by_id or (len(parts) == 2 and collection in OBJECT_COLLECTIONS):
            routes.append(resource.canonical)
    return sorted(routes)


ROUTES = object_routes()


def test_the_route_table_is_covered() -> None:
    for prefix in ("", "/v1"):
        for collection in OBJECT_COLLECTIONS:
            for tail in ("", "/{id}", "/{id}/{tail}"):
                assert f"{prefix}/{collection}{tail}" in ROUTES
        assert f"{prefix}/responses/{{id}}" in ROUTES
        assert f"{prefix}/responses/{{id}}/{{tail}}" in ROUTES
    assert len(ROUTES) == 2 * (3 * len(OBJECT_COLLECTIONS) + 2)


@dataclass
class Harness:
    """A proxy (no authentication: one tenant, every id forwarded) before a fake upstream that
    records each request's raw target, both on a loop of their own in a thread (hypothesis
    drives plain blocking sockets)."""

    port: int
    received: list[str]

    def send(self, method: str, target: str) -> int:
        """The status of `method target` sent byte for byte (no client normalises it)."""
        head = (
            f"{method} {target} HTTP/1.1\r\nHost: proxy\r\nContent-Type: application/json\r\n"
            "Content-Length: 2\r\nConnection: close\r\n\r\n{}"
        )
        with socket.create_connection(("127.0.0.1", self.port), timeout=10) as sock:
            sock.sendall(head.encode("latin-1"))
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
        return int(data.split(b" ", 2)[1])


def recording_upstream(received: list[str]) -> web.Application:
    async def any_path(request: web.Request) -> web.Response:
        received.append(request.raw_path)
        return web.json_response({"object": "list", "data": []})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", any_path)
    return app


@pytest.fixture(scope="module")
def harness() -> Iterator[Harness]:
    received: list[str] = []
    started = threading.Event()
    found: dict[str, Any] = {}

    async def main() -> None:
        stop = found["stop"] = asyncio.Event()
        found["loop"] = asyncio.get_running_loop()
        async with serve(recording_upstream(received)) as up:
            config = make_config(provider("only", up + "/v1", {"m": None}))
            async with serve(create_app(config)) as url:
                found["port"] = URL(url).port
                started.set()
                await stop.wait()

    thread = threading.Thread(target=lambda: uvloop.run(main()), daemon=True)
    thread.start()
    assert started.wait(10)
    yield Harness(found["port"], received)
    found["loop"].call_soon_threadsafe(found["stop"].set)
    thread.join(30)


def stays_under(target: str, collection: str) -> bool:
    """The raw path the upstream received is `/v1/<collection>` or below it, and no server
    decoding it (once or more) or normalising it finds a dot segment or another separator."""
    path = target.partition("?")[0]
    base = f"/v1/{collection}"
    if not (path == base or path.startswith(base + "/")):
        return False
    for segment in path.split("/")[1:]:
        level = segment
        for _ in range(4):
            if level in ("", ".", "..") or "/" in level or "\\" in level:
                return False
            level = unquote(level)
    return URL("http://h" + path).path.startswith(base)


ATOMS = (
    *(".", "..", "%2e", "%2E", "%2e%2E", ".%2e", "%252e", "%252E%252e", "%2f", "%2F", "%5c"),
    *("%5C", "\\", "x", "file-abc", "%00", "%25", "..;", "~", "%7e", ";", ":", "%3f", "%23"),
)
SEGMENT = st.lists(st.sampled_from(ATOMS), min_size=0, max_size=4).map("".join)
SEPARATOR = st.sampled_from(("/", "/", "/", "//", "/./", "/../", "\\", "%2f", "/%2e/", "/%2e%2e/"))


@st.composite
def filled(draw: st.DrawFn, route: str) -> str:
    """`route` with its `{id}` and `{tail}` replaced by generated segments and separators."""
    target = route.replace("{id}", draw(SEGMENT) or "x")
    if "{tail}" in target:
        parts = draw(st.lists(SEGMENT, min_size=1, max_size=5))
        tail = parts[0]
        for part in parts[1:]:
            tail += draw(SEPARATOR) + part
        target = target.replace("{tail}", tail or "x")
    return target


@pytest.mark.parametrize("route", ROUTES)
@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_no_object_path_leaves_its_collection(
    harness: Harness, route: str, data: st.DataObject
) -> None:
    collection = route.removeprefix("/v1").split("/")[1]
    target = data.draw(filled(route))
    method = data.draw(st.sampled_from(("GET", "POST", "DELETE")))
    before = len(harness.received)
    status = harness.send(method, target)
    sent = harness.received[before:]
    assert status != 500, target
    for path in sent:
        assert stays_under(path, collection), (method, target, path)
    if status == 400:
        assert not sent, (target, sent)


ATTACKS = (
    "/v1/files/x/../../chat/completions",
    "/files/x/../../chat/completions",
    "/v1/files/%2e%2e/%2e%2e/chat/completions",
    "/v1/files/x/%2E%2E/%2E%2E/%2E%2E/admin",
    "/v1/responses/r/../../chat/completions",
    "/v1/batches/%2e%2e",
    "/v1/uploads/u/..%2f..%2fchat%2fcompletions",
    "/v1/vector_stores/vs/%252e%252e/%252e%252e/chat/completions",
    "/v1/conversations/c/..\\..\\chat\\completions",
    "/conversations/./x",
)


@pytest.mark.parametrize("target", ATTACKS)
def test_the_audits_paths_are_refused(harness: Harness, target: str) -> None:
    for method in ("GET", "POST", "DELETE"):
        before = len(harness.received)
        assert harness.send(method, target) == 400, (method, target)
        assert harness.received[before:] == []


def test_an_ordinary_path_is_sent_as_it_came(harness: Harness) -> None:
    before = len(harness.received)
    assert harness.send("GET", "/files/file-abc/content") == 200
    assert harness.send("DELETE", "/v1/vector_stores/vs_1/files/file-2") == 200
    assert harness.received[before:] == [
        "/v1/files/file-abc/content",
        "/v1/vector_stores/vs_1/files/file-2",
    ]


def test_the_query_string_goes_as_sent(harness: Harness) -> None:
    before = len(harness.received)
    assert harness.send("GET", "/v1/files?purpose=a+b&after=%C3%A9&x=%2B") == 200
    assert harness.received[before:] == ["/v1/files?purpose=a+b&after=%C3%A9&x=%2B"]
    for raw in ("/v1/files?a=\x01", "/v1/files/f?a=b\x7f"):
        before = len(harness.received)
        assert harness.send("GET", raw) == 400
        assert harness.received[before:] == []


# -- Two tenants ---------------------------------------------------------------------------------

ALICE = "sk-alice-0123456789abcdef"
BOB = "sk-bob-0123456789abcdefgh"
OPS = "sk-ops-0123456789abcdefgh"  # shared_objects: sees every tenant's objects
KEYS = [
    {"name": "alice", "key": ALICE},
    {"name": "bob", "key": BOB},
    {"name": "ops", "key": OPS, "shared_objects": True},
]
MODELS = {"gpt-4o-mini": None, "gpt-4o": None}


@pytest.fixture
async def mock_url() -> AsyncIterator[str]:
    async with serve(create_mock_app(MockOptions(name="acct"))) as url:
        yield url + "/v1"


@pytest.fixture
async def proxy(mock_url: str, start_proxy: ProxyFactory) -> str:
    return await start_proxy(make_config(provider("acct", mock_url, MODELS), master_keys=KEYS))


@pytest.fixture
async def clients(proxy: str) -> AsyncIterator[dict[str, openai.AsyncOpenAI]]:
    made = {name: sdk(proxy, key) for name, key in (("alice", ALICE), ("bob", BOB), ("ops", OPS))}
    yield made
    for client in made.values():
        await client.close()


def proxy_url(client: openai.AsyncOpenAI) -> str:
    return str(client.base_url).rstrip("/")


async def refused(call: Awaitable[Any], object_id: str) -> dict[str, Any]:
    """`call` is a 404 with the proxy's body for an unknown id (the id put aside)."""
    with pytest.raises(openai.NotFoundError) as caught:
        await call
    body = caught.value.response.json()
    body["error"]["message"] = body["error"]["message"].replace(object_id, "<id>")
    return dict(body)


async def same_as_unknown(call: Callable[[str], Awaitable[Any]], object_id: str) -> None:
    """`call(object_id)` is refused exactly as `call` on an id nobody made."""
    unknown = object_id[:-3] + "zzz"
    assert await refused(call(object_id), object_id) == await refused(call(unknown), unknown)


BATCH_LINES = b'{"custom_id": "1", "method": "POST", "url": "/v1/chat/completions", "body": {"model": "gpt-4o-mini", "messages": []}}\n'  # noqa: E501


async def test_files_belong_to_their_key(clients: dict[str, openai.AsyncOpenAI]) -> None:
    alice, bob, ops = clients["alice"], clients["bob"], clients["ops"]
    mine = await alice.files.create(file=("a.jsonl", BATCH_LINES), purpose="batch")
    theirs = await bob.files.create(file=("b.jsonl", BATCH_LINES), purpose="batch")
    await same_as_unknown(bob.files.retrieve, mine.id)
    await same_as_unknown(bob.files.content, mine.id)
    await same_as_unknown(bob.files.delete, mine.id)
    assert [f.id for f in (await bob.files.list()).data] == [theirs.id]
    assert [f.id for f in (await alice.files.list()).data] == [mine.id]
    assert {f.id for f in (await ops.files.list()).data} == {mine.id, theirs.id}
    assert (await alice.files.content(mine.id)).content == BATCH_LINES
    assert (await ops.files.retrieve(theirs.id)).id == theirs.id
    assert (await alice.files.delete(mine.id)).deleted


async def test_batches_belong_to_their_key(clients: dict[str, openai.AsyncOpenAI]) -> None:
    alice, bob, ops = clients["alice"], clients["bob"], clients["ops"]
    file = await alice.files.create(file=("a.jsonl", BATCH_LINES), purpose="batch")

    def on(file_id: str) -> Awaitable[Any]:
        return bob.batches.create(
            input_file_id=file_id, endpoint="/v1/chat/completions", completion_window="24h"
        )

    await same_as_unknown(on, file.id)  # a batch on another key's file
    batch = await alice.batches.create(
        input_file_id=file.id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    bobs_file = await bob.files.create(file=("b.jsonl", BATCH_LINES), purpose="batch")
    bobs = await on(bobs_file.id)
    await same_as_unknown(bob.batches.retrieve, batch.id)
    await same_as_unknown(bob.batches.cancel, batch.id)
    assert [b.id for b in (await bob.batches.list()).data] == [bobs.id]
    assert [b.id for b in (await alice.batches.list()).data] == [batch.id]
    assert {b.id for b in (await ops.batches.list()).data} == {batch.id, bobs.id}
    assert (await alice.batches.cancel(batch.id)).status == "cancelling"
    assert (await ops.batches.retrieve(bobs.id)).id == bobs.id


async def test_uploads_belong_to_their_key(clients: dict[str, openai.AsyncOpenAI]) -> None:
    alice, bob, ops = clients["alice"], clients["bob"], clients["ops"]
    upload = await alice.uploads.create(
        bytes=len(BATCH_LINES), filename="a.jsonl", mime_type="text/jsonl", purpose="batch"
    )

    def add_part(upload_id: str) -> Awaitable[Any]:
        return bob.uploads.parts.create(upload_id, data=BATCH_LINES)

    await same_as_unknown(add_part, upload.id)
    await same_as_unknown(lambda u: bob.uploads.complete(u, part_ids=[]), upload.id)
    await same_as_unknown(bob.uploads.cancel, upload.id)
    part = await alice.uploads.parts.create(upload.id, data=BATCH_LINES)
    done = await alice.uploads.complete(upload.id, part_ids=[part.id])
    assert done.file is not None
    # The file it made is the key's: readable by it (and ops), a 404 to bob.
    assert (await alice.files.content(done.file.id)).content == BATCH_LINES
    await same_as_unknown(bob.files.content, done.file.id)
    assert done.file.id in {f.id for f in (await alice.files.list()).data}
    assert done.file.id not in {f.id for f in (await bob.files.list()).data}
    other = await ops.uploads.create(
        bytes=1, filename="o.txt", mime_type="text/plain", purpose="assistants"
    )
    assert (await ops.uploads.cancel(upload.id)).id == upload.id
    await same_as_unknown(bob.uploads.cancel, other.id)


async def test_vector_stores_belong_to_their_key(clients: dict[str, openai.AsyncOpenAI]) -> None:
    alice, bob, ops = clients["alice"], clients["bob"], clients["ops"]
    file = await alice.files.create(file=("a.txt", b"alice's notes"), purpose="assistants")
    await same_as_unknown(lambda f: bob.vector_stores.create(name="x", file_ids=[f]), file.id)
    store = await alice.vector_stores.create(name="alice", file_ids=[file.id])
    bobs_file = await bob.files.create(file=("b.txt", b"bob's notes"), purpose="assistants")
    bobs = await bob.vector_stores.create(name="bob")
    await same_as_unknown(bob.vector_stores.retrieve, store.id)
    await same_as_unknown(lambda s: bob.vector_stores.update(s, name="mine"), store.id)
    await same_as_unknown(bob.vector_stores.files.list, store.id)
    await same_as_unknown(
        lambda s: bob.vector_stores.files.create(s, file_id=bobs_file.id), store.id
    )
    await same_as_unknown(
        lambda s: bob.vector_stores.files.retrieve(file.id, vector_store_id=s), store.id
    )
    await same_as_unknown(bob.vector_stores.delete, store.id)
    # Attaching another key's file to one's own store would let file_search read it.
    await same_as_unknown(lambda f: bob.vector_stores.files.create(bobs.id, file_id=f), file.id)
    assert [s.id for s in (await bob.vector_stores.list()).data] == [bobs.id]
    assert [s.id for s in (await alice.vector_stores.list()).data] == [store.id]
    assert {s.id for s in (await ops.vector_stores.list()).data} == {store.id, bobs.id}
    assert [f.id for f in (await alice.vector_stores.files.list(store.id)).data] == [file.id]
    assert (await alice.vector_stores.delete(store.id)).deleted


async def test_conversations_belong_to_their_key(clients: dict[str, openai.AsyncOpenAI]) -> None:
    alice, bob, ops = clients["alice"], clients["bob"], clients["ops"]
    item = {"type": "message", "role": "user", "content": "alice's secret"}
    conv = await alice.conversations.create(items=[item])  # type: ignore[list-item]
    items = await alice.conversations.items.list(conv.id)
    await same_as_unknown(bob.conversations.retrieve, conv.id)
    await same_as_unknown(lambda c: bob.conversations.update(c, metadata={"a": "b"}), conv.id)
    await same_as_unknown(bob.conversations.items.list, conv.id)
    await same_as_unknown(
        lambda c: bob.conversations.items.retrieve(items.data[0].id, conversation_id=c), conv.id
    )
    await same_as_unknown(
        lambda c: bob.conversations.items.create(c, items=[item]),  # type: ignore[list-item]
        conv.id,
    )
    await same_as_unknown(
        lambda c: bob.responses.create(model="gpt-4o-mini", input="and?", conversation=c),
        conv.id,
    )
    await same_as_unknown(bob.conversations.delete, conv.id)
    assert (await ops.conversations.retrieve(conv.id)).id == conv.id
    assert (await alice.conversations.delete(conv.id)).deleted


async def test_responses_belong_to_their_key(clients: dict[str, openai.AsyncOpenAI]) -> None:
    alice, bob, ops = clients["alice"], clients["bob"], clients["ops"]
    first = await alice.responses.create(model="gpt-4o-mini", input="alice's question")
    await same_as_unknown(bob.responses.retrieve, first.id)
    await same_as_unknown(bob.responses.input_items.list, first.id)
    await same_as_unknown(bob.responses.cancel, first.id)
    await same_as_unknown(bob.responses.delete, first.id)
    await same_as_unknown(
        lambda r: bob.responses.create(model="gpt-4o-mini", input="more", previous_response_id=r),
        first.id,
    )
    follow = await alice.responses.create(
        model="gpt-4o-mini", input="more", previous_response_id=first.id
    )
    assert follow.previous_response_id == first.id
    assert (await ops.responses.retrieve(first.id)).id == first.id
    items = await alice.responses.input_items.list(first.id)
    assert items.data
    await alice.responses.delete(first.id)


async def test_file_search_over_another_keys_store_is_refused(
    clients: dict[str, openai.AsyncOpenAI],
) -> None:
    alice, bob = clients["alice"], clients["bob"]
    store = await alice.vector_stores.create(name="alice")
    tools: Any = [{"type": "file_search", "vector_store_ids": [store.id]}]

    def search(s: str) -> Awaitable[Any]:
        tools[0]["vector_store_ids"] = [s]
        return bob.responses.create(model="gpt-4o-mini", input="q", tools=tools)

    await same_as_unknown(search, store.id)


async def test_a_message_naming_another_keys_file_is_refused(
    clients: dict[str, openai.AsyncOpenAI],
) -> None:
    """Sending another key's file to a model would read it: chat, Responses, any depth."""
    alice, bob = clients["alice"], clients["bob"]
    file = await alice.files.create(file=("a.txt", b"alice's secret"), purpose="user_data")

    def chat(f: str) -> Awaitable[Any]:
        part: Any = {"type": "file", "file": {"file_id": f}}
        return bob.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": [part]}]
        )

    def respond(f: str) -> Awaitable[Any]:
        part: Any = {"type": "input_file", "file_id": f}
        return bob.responses.create(
            model="gpt-4o-mini", input=[{"role": "user", "content": [part]}]
        )

    await same_as_unknown(chat, file.id)
    await same_as_unknown(respond, file.id)
    # Spelt with escapes, or sent as another Content-Type: still read, still refused.
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {BOB}"}) as http:
        part = '{"type": "file", "file": {"file\\u005fid": "' + file.id + '"}}'
        escaped = '{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": [' + part
        escaped += "]}]}"
        json_type = {"Content-Type": "application/json"}
        async with http.post(
            proxy_url(bob) + "/chat/completions", data=escaped, headers=json_type
        ) as resp:
            assert resp.status == 404, await resp.text()
        batch = '{"input_file_id": "' + file.id + '", "endpoint": "/v1/chat/completions", '
        batch += '"completion_window": "24h"}'
        for body, content_type in ((batch, "text/plain"), (batch[:-1] + ', "x": NaN}', "json")):
            async with http.post(
                proxy_url(bob) + "/batches", data=body, headers={"Content-Type": content_type}
            ) as resp:
                assert resp.status in (400, 404), await resp.text()
    mine = await bob.files.create(file=("b.txt", b"bob's"), purpose="user_data")
    assert (await chat(mine.id)).choices
    assert (
        await clients["ops"].responses.create(
            model="gpt-4o-mini",
            input=[{"role": "user", "content": [{"type": "input_file", "file_id": file.id}]}],  # type: ignore[list-item]
        )
    ).id


async def test_without_authentication_there_is_one_tenant(
    mock_url: str, start_proxy: ProxyFactory
) -> None:
    url = await start_proxy(make_config(provider("acct", mock_url, MODELS)))
    async with sdk(url, "x") as client:
        made = await client.files.create(file=("a.jsonl", BATCH_LINES), purpose="batch")
        assert [f.id for f in (await client.files.list()).data] == [made.id]
        # An object made at the provider directly (unknown to the proxy) is reachable too.
        async with aiohttp.ClientSession() as http:
            form = aiohttp.FormData({"purpose": "batch"})
            form.add_field("file", BATCH_LINES, filename="d.jsonl")
            async with http.post(mock_url + "/files", data=form) as resp:
                direct = (await resp.json())["id"]
        assert (await client.files.retrieve(direct)).id == direct


async def test_a_key_may_not_list_what_cannot_be_filtered(proxy: str) -> None:
    async with aiohttp.ClientSession() as http:
        for path in ("/v1/conversations", "/v1/uploads"):
            async with http.get(proxy + path, headers={"Authorization": f"Bearer {BOB}"}) as r:
                assert r.status == 400
                assert (await r.json())["error"]["code"] == "list_not_available"
        async with http.get(
            proxy + "/v1/files?limit=abc", headers={"Authorization": f"Bearer {BOB}"}
        ) as r:
            assert r.status == 400
            assert (await r.json())["error"]["param"] == "limit"


async def test_a_list_page_keeps_the_clients_limit(clients: dict[str, openai.AsyncOpenAI]) -> None:
    alice, bob = clients["alice"], clients["bob"]
    for i in range(3):
        await alice.batches.create(
            input_file_id=(
                await alice.files.create(file=(f"{i}.jsonl", BATCH_LINES), purpose="batch")
            ).id,
            endpoint="/v1/chat/completions",
            completion_window="24h",
        )
        await bob.files.create(file=(f"b{i}.jsonl", BATCH_LINES), purpose="batch")
    page = await alice.batches.list(limit=2)
    assert len(page.data) == 2 and page.has_more
    assert len([b async for b in alice.batches.list(limit=2)]) == 3  # the SDK pages on
    assert len((await alice.files.list()).data) == 3


# -- Batches: models and budgets -----------------------------------------------------------------


def jsonl(*models: str) -> bytes:
    return b"".join(
        b'{"custom_id": "%d", "method": "POST", "url": "/v1/chat/completions", '
        b'"body": {"model": "%s", "messages": [{"role": "user", "content": "\\"model\\""}]}}\n'
        % (i, m.encode())
        for i, m in enumerate(models)
    )


async def test_a_batch_respects_the_keys_models(mock_url: str, start_proxy: ProxyFactory) -> None:
    keys = [{"name": "mini", "key": ALICE, "allowed_models": ["gpt-4o-mini"]}]
    url = await start_proxy(make_config(provider("acct", mock_url, MODELS), master_keys=keys))
    async with sdk(url, ALICE) as client:

        async def batch(file_id: str) -> Any:
            return await client.batches.create(
                input_file_id=file_id, endpoint="/v1/chat/completions", completion_window="24h"
            )

        ok = await client.files.create(file=("ok.jsonl", jsonl("gpt-4o-mini")), purpose="batch")
        assert (await batch(ok.id)).input_file_id == ok.id
        bad = await client.files.create(
            file=("bad.jsonl", jsonl("gpt-4o-mini", "gpt-4o", "gpt-4o-mini")), purpose="batch"
        )
        with pytest.raises(openai.PermissionDeniedError) as caught:
            await batch(bad.id)
        assert caught.value.code == "model_not_allowed" and "gpt-4o" in caught.value.message
        # A file whose lines the proxy never read (sent in parts) is refused, saying why.
        upload = await client.uploads.create(
            bytes=100, filename="u.jsonl", mime_type="text/jsonl", purpose="batch"
        )
        part = await client.uploads.parts.create(upload.id, data=jsonl("gpt-4o"))
        done = await client.uploads.complete(upload.id, part_ids=[part.id])
        assert done.file is not None
        with pytest.raises(openai.BadRequestError) as unknown:
            await batch(done.file.id)
        assert unknown.value.code == "batch_models_unknown"
        garbled = await client.files.create(
            file=("g.jsonl", jsonl("gpt-4o-mini") + b"{not json\n"), purpose="batch"
        )
        with pytest.raises(openai.BadRequestError):
            await batch(garbled.id)
        # The purpose after the file, CRLF lines, a line of megabytes: read all the same.
        big = jsonl("gpt-4o-mini").replace(b'\\"model\\"', b"x" * (3 << 20))
        for lines, allowed in ((jsonl("gpt-4o-mini", "gpt-4o"), False), (big, True)):
            form = aiohttp.FormData()
            content = io.BytesIO(lines.replace(b"\n", b"\r\n"))
            form.add_field("file", content, filename="late.jsonl")
            form.add_field("purpose", "batch")
            async with (
                aiohttp.ClientSession() as http,
                http.post(
                    url + "/v1/files", data=form, headers={"Authorization": f"Bearer {ALICE}"}
                ) as resp,
            ):
                late = (await resp.json())["id"]
            if allowed:
                assert (await batch(late)).input_file_id == late
            else:
                with pytest.raises(openai.PermissionDeniedError):
                    await batch(late)


async def test_a_finished_batch_is_charged_to_its_key_once(
    mock_url: str, start_proxy: ProxyFactory
) -> None:
    # $1 per input token, $2 per output token: a two-line batch (20 in, 10 out) costs $40.
    keys = [
        {"name": "payer", "key": ALICE, "max_budget_usd": 70},
        {"name": "ops", "key": OPS, "shared_objects": True},
    ]
    config = make_config(
        provider("acct", mock_url, {**MODELS, "free": None}),
        master_keys=keys,
        pricing={"gpt-4o-mini": {"input_per_mtok": 1e6, "output_per_mtok": 2e6}},
    )
    url = await start_proxy(config)
    async with (
        sdk(url, ALICE) as client,
        sdk(url, OPS) as shared,
    ):
        file = await client.files.create(
            file=("in.jsonl", jsonl("gpt-4o-mini", "gpt-4o-mini")), purpose="batch"
        )
        batch = await client.batches.create(
            input_file_id=file.id,
            endpoint="/v1/chat/completions",
            completion_window="24h",
            metadata={"mock_complete": "true"},
        )
        # Seen finished by a retrieve, a list and another key's retrieve: charged once.
        done = await client.batches.retrieve(batch.id)
        assert done.status == "completed" and done.output_file_id
        await client.batches.list()
        await shared.batches.retrieve(batch.id)
        await client.batches.retrieve(batch.id)
        chat = {"model": "free", "messages": [{"role": "user", "content": "hi"}]}
        await client.chat.completions.create(**chat)  # $40 of $70 spent: still allowed
        # Its output file is the key's.
        assert (await client.files.content(done.output_file_id)).content
        # A second batch is charged too: $80 > $70.
        second = await client.batches.create(
            input_file_id=file.id,
            endpoint="/v1/chat/completions",
            completion_window="24h",
            metadata={"mock_complete": "true"},
        )
        assert second.status == "completed"  # (the mock finishes it at once)
        with pytest.raises(openai.RateLimitError) as caught:
            await client.chat.completions.create(**chat)
        assert caught.value.code == "budget_exceeded"


# -- Database mode -------------------------------------------------------------------------------


async def test_isolation_holds_across_instances_in_database_mode(
    mock_url: str, start_proxy: ProxyFactory, config_dsn: str
) -> None:
    import asyncpg

    from llm_proxy.config.model import Config
    from tests.helpers.db import add_provider, start_db_proxy

    sql = await asyncpg.connect(config_dsn)
    try:
        await add_provider(sql, "acct", mock_url, MODELS)
        for name, key in (("alice", ALICE), ("bob", BOB)):
            await sql.execute("INSERT INTO credentials (name, key) VALUES ($1, $2)", name, key)
    finally:
        await sql.close()
    one = await start_db_proxy(start_proxy, config_dsn, Config())
    two = await start_db_proxy(start_proxy, config_dsn, Config())
    async with (
        sdk(one, ALICE) as alice_one,
        sdk(two, ALICE) as alice_two,
        sdk(two, BOB) as bob_two,
    ):
        file = await alice_one.files.create(file=("a.jsonl", BATCH_LINES), purpose="batch")
        first = await alice_one.responses.create(model="gpt-4o-mini", input="q")
        # Instance two never saw them created: it still refuses bob and serves alice.
        await same_as_unknown(bob_two.files.content, file.id)
        await same_as_unknown(bob_two.responses.retrieve, first.id)
        assert (await alice_two.files.retrieve(file.id)).id == file.id
        assert [f.id for f in (await bob_two.files.list()).data] == []
        assert [f.id for f in (await alice_two.files.list()).data] == [file.id]
        follow = await alice_two.responses.create(
            model="gpt-4o-mini", input="more", previous_response_id=first.id
        )
        assert follow.previous_response_id == first.id


async def test_an_azure_deployment_in_the_path_stays_one_segment(
    start_proxy: ProxyFactory,
) -> None:
    """`/openai/deployments/{deployment}/...`: a client-chosen deployment (a model pattern
    passes it through) is sent as one segment; a dot segment is a 400."""
    received: list[str] = []
    async with serve(recording_upstream(received)) as up:
        azure = {
            **provider("az", up, {"*": None}),
            "provider_type": "azure",
            "query_params": {"api-version": "2024-10-21"},
        }
        url = URL(await start_proxy(make_config(azure)))
        sent = Harness(url.port or 0, received)
        loop = asyncio.get_running_loop()
        for deployment, status in (("..%2F..%2Ffiles", 200), ("%2e%2e", 400), (".", 400)):
            target = f"/openai/deployments/{deployment}/chat/completions?api-version=1"
            assert await loop.run_in_executor(None, sent.send, "POST", target) == status
    assert received == [
        "/openai/deployments/..%2F..%2Ffiles/chat/completions?api-version=2024-10-21"
    ]


async def test_a_list_the_proxy_cannot_read_is_never_relayed(start_proxy: ProxyFactory) -> None:
    """A provider compressing a list despite `Accept-Encoding: identity`: a 502, not the list
    unfiltered."""

    async def gzipped(request: web.Request) -> web.Response:
        resp = web.json_response({"object": "list", "data": [{"id": "file-of-someone-else"}]})
        resp.enable_compression(web.ContentCoding.gzip)
        return resp

    app = web.Application()
    app.router.add_get("/v1/files", gzipped)
    async with serve(app) as up:
        url = await start_proxy(make_config(provider("p", up + "/v1", MODELS), master_keys=KEYS))
        async with aiohttp.ClientSession() as http:
            for key, status in ((BOB, 502), (OPS, 200)):
                headers = {"Authorization": f"Bearer {key}"}
                async with http.get(url + "/v1/files", headers=headers) as resp:
                    assert resp.status == status
                    assert ("file-of-someone-else" in await resp.text()) is (key == OPS)
