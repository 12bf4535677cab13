"""The request log: one row per request in PostgreSQL (and per failed attempt), the usage
rollup, a JSON-lines file reopened on SIGHUP, content capture, retention, and the rules that
keep it off the request path (a bounded queue, a database outage that only drops records)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import openai
import orjson
import pytest
import structlog

from llm_proxy.config import migrate
from llm_proxy.config.model import RequestLogSettings
from llm_proxy.observe.records import CACHE_RESULTS, ErrorRecord, RequestRecord, error_summary
from llm_proxy.observe.request_log import DatabaseLog, JsonlLog
from tests.helpers import (
    ProxyFactory,
    Upstream,
    ask,
    eventually,
    free_port,
    make_config,
    provider,
    sample,
    scrape,
    sdk,
    yaml_config,
)
from tests.helpers.db import rows, wait_rows
from tests.helpers.processes import serve_process

KEYS = [{"name": "team-a", "key": "sk-team-a-0123456789"}]
PRICING = {"gpt-4o-mini": {"input_per_mtok": 1.0, "output_per_mtok": 2.0}}


def log_settings(**kw: Any) -> dict[str, Any]:
    return {"flush_interval_secs": 0.05, **kw}


async def test_every_request_is_a_row_with_its_attempts_tokens_and_cost(
    upstream: Upstream, start_proxy: ProxyFactory, config_dsn: str
) -> None:
    dead = free_port()
    url = await start_proxy(
        make_config(
            provider("down", f"http://127.0.0.1:{dead}/v1", {"gpt-4o-mini": "mini-sent"}),
            provider("up", upstream.api_base, {"gpt-4o-mini": "mini-sent"}, weight=1),
            master_keys=KEYS,
            pricing=PRICING,
            request_log=log_settings(database_url=config_dsn),
        )
    )
    async with sdk(url, "sk-team-a-0123456789") as client:
        for _ in range(2):  # round-robin: one of the two starts at the dead provider
            await ask(client, "gpt-4o-mini")
        await ask(client, "gpt-4o-mini", stream=True)
        with pytest.raises(openai.NotFoundError):
            await ask(client, "no-such-model")
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            url + "/v1/chat/completions", json={"model": "gpt-4o-mini", "messages": []}
        ) as resp,
    ):
        assert resp.status == 401  # counted in the metrics, never written (one row per 401
        # was a flood: see tests/middlewares/test_middlewares.py)

    found = await wait_rows(config_dsn, "SELECT * FROM request_logs ORDER BY ts, id", 4)
    assert len(found) == 4
    ok = [r for r in found if r["status"] == 200]
    assert len(ok) == 3
    for r in ok:
        assert r["key_name"] == "team-a"
        assert r["client"] == "openai-python"
        assert r["model"] == "gpt-4o-mini" and r["model_sent"] == "mini-sent"
        assert r["provider"] == "up"
        assert r["prompt_tokens"] > 0 and r["completion_tokens"] > 0
        expected = (r["prompt_tokens"] * 1.0 + r["completion_tokens"] * 2.0) / 1e6
        assert r["cost_usd"] == pytest.approx(expected)
        assert r["method"] == "POST" and r["path"] == "/v1/chat/completions"
        assert r["error_code"] is None and r["prompt"] is None and r["completion"] is None
        assert r["duration_ms"] > 0
    assert [r["streamed"] for r in ok] == [False, False, True]
    assert ok[2]["ttft_ms"] is not None
    # Round-robin: requests that met the dead provider first tried both, in order.
    failed_over = {r["request_id"] for r in ok if list(r["attempts"]) == ["down", "up"]}
    assert failed_over and all(list(r["attempts"]) in (["up"], ["down", "up"]) for r in ok)
    missing = found[3]
    assert (missing["status"], missing["error_code"]) == (404, "model_not_found")
    assert missing["provider"] == "none" and list(missing["attempts"]) == []

    errors = await wait_rows(config_dsn, "SELECT * FROM error_logs", len(failed_over))
    assert {e["request_id"] for e in errors} == failed_over
    for error in errors:
        assert (error["provider"], error["outcome"], error["upstream_status"]) == (
            "down",
            "connect_error",
            None,
        )
        assert "connection refused" in error["detail"]

    usage = await rows(config_dsn, "SELECT * FROM usage_daily ORDER BY key_name, model, provider")
    by = {(u["key_name"], u["model"], u["provider"]): u for u in usage}
    mini = by[("team-a", "gpt-4o-mini", "up")]
    assert mini["requests"] == 3 and mini["errors"] == 0
    assert mini["prompt_tokens"] == sum(r["prompt_tokens"] for r in ok)
    assert mini["cost_usd"] == pytest.approx(sum(r["cost_usd"] for r in ok))
    assert by[("team-a", "", "none")]["errors"] == 1  # the unknown model: no model row
    assert ("anonymous", "", "none") not in by


@pytest.mark.parametrize("capture", [False, True])
async def test_failed_answers_keep_their_status_and_body_only_with_capture(
    upstream: Upstream, start_proxy: ProxyFactory, config_dsn: str, capture: bool
) -> None:
    """Without content capture an upstream error keeps its type and code, never its message
    (it may repeat the prompt); with capture, its first 2 KB."""
    url = await start_proxy(
        make_config(
            provider("a", upstream.api_base, {"m": None}),
            provider("b", upstream.api_base, {"m": None}),
            request_log=log_settings(database_url=config_dsn, capture_content=capture),
        )
    )
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            url + "/v1/chat/completions", json={"model": "m", "messages": [], "mock_status": 503}
        ) as resp,
    ):
        assert resp.status == 503
        request_id = resp.headers["x-request-id"]
    errors = await wait_rows(config_dsn, "SELECT * FROM error_logs ORDER BY id", 2)
    assert [(e["outcome"], e["upstream_status"]) for e in errors] == [
        ("http_5xx", 503),
        ("http_5xx", 503),
    ]
    assert {e["provider"] for e in errors} == {"a", "b"}
    for e in errors:
        assert e["request_id"] == request_id
        if capture:
            assert "mock upstream error 503" in e["body"]
        else:
            assert orjson.loads(e["body"]) == {"type": "server_error", "code": "mock_503"}
    (row,) = await wait_rows(config_dsn, "SELECT * FROM request_logs", 1)
    assert row["status"] == 503 and len(row["attempts"]) == 2


async def test_content_is_captured_only_when_asked_and_truncated(
    upstream: Upstream, start_proxy: ProxyFactory, config_dsn: str
) -> None:
    url = await start_proxy(
        make_config(
            provider("a", upstream.api_base, {"m": None}),
            request_log=log_settings(
                database_url=config_dsn, capture_content=True, max_content_bytes=64
            ),
        )
    )
    long_prompt = "é" * 100 + "tail"
    async with sdk(url, "x") as client:
        await client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "short question"}]
        )
        stream = await client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": long_prompt}], stream=True
        )
        async for _ in stream:
            pass
    found = await wait_rows(
        config_dsn, "SELECT prompt, completion FROM request_logs ORDER BY ts", 2
    )
    assert found[0]["prompt"] == "short question"
    assert found[0]["completion"]
    assert found[1]["prompt"] == "é" * 32  # 64 bytes of UTF-8, never half a character
    assert found[1]["completion"].startswith("tok0 tok1")


async def test_hostile_text_is_stored_not_refused(
    upstream: Upstream, start_proxy: ProxyFactory, config_dsn: str
) -> None:
    """NUL (legal in JSON, refused by PostgreSQL's text) never loses a batch."""
    url = await start_proxy(
        make_config(
            provider("a", upstream.api_base, {"m": None}),
            request_log=log_settings(database_url=config_dsn, capture_content=True),
        )
    )
    body = b'{"model": "bad\\u0000name", "messages": [{"role":"user","content":"a\\u0000b"}]}'
    async with aiohttp.ClientSession() as http:
        async with http.post(
            url + "/v1/chat/completions", data=body, headers={"Content-Type": "application/json"}
        ) as resp:
            assert resp.status == 404
        async with http.post(
            url + "/v1/chat/completions", json={"model": "m", "messages": []}
        ) as resp:
            assert resp.status == 200
    found = await wait_rows(config_dsn, "SELECT model, status FROM request_logs ORDER BY ts", 2)
    assert found[0]["model"] == "bad\ufffdname" and found[0]["status"] == 404
    assert found[1]["status"] == 200


class Switch:
    """A TCP forwarder to PostgreSQL that the test turns off (connections refused) and on:
    a database outage and its end, without touching the real server."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self.server: asyncio.Server | None = None
        self.pipes: set[asyncio.Task[None]] = set()

    async def on(self) -> None:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)

    async def off(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()
            self.server = None
        for task in list(self.pipes):
            task.cancel()
        await asyncio.gather(*self.pipes, return_exceptions=True)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, asyncio.CancelledError):
                pass
            finally:
                dst.close()

        tasks = [
            asyncio.create_task(pipe(reader, up_writer)),
            asyncio.create_task(pipe(up_reader, writer)),
        ]
        self.pipes.update(tasks)
        for task in tasks:
            task.add_done_callback(self.pipes.discard)


@pytest.fixture
async def switch(config_dsn: str) -> AsyncIterator[tuple[Switch, str]]:
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(config_dsn)
    sw = Switch(parts.port or 5432)
    user = f"{parts.username}@" if parts.username else ""
    dsn = urlunsplit(parts._replace(netloc=f"{user}127.0.0.1:{sw.port}"))
    yield sw, dsn
    await sw.off()


async def test_a_database_outage_drops_records_never_requests(
    upstream: Upstream,
    start_proxy: ProxyFactory,
    config_dsn: str,
    switch: tuple[Switch, str],
    http: aiohttp.ClientSession,
) -> None:
    sw, dsn = switch  # off: the database is unreachable from the start
    url = await start_proxy(
        make_config(
            provider("a", upstream.api_base, {"m": None}),
            request_log=log_settings(database_url=dsn, queue_size=5, batch_size=2),
        )
    )
    for _ in range(8):
        async with http.post(
            url + "/v1/chat/completions", json={"model": "m", "messages": []}
        ) as resp:
            assert resp.status == 200
    metrics = await scrape(http, url)
    assert sample(metrics, "llm_proxy_request_log_dropped_total", sink="database") == 3
    assert sample(metrics, "llm_proxy_request_log_queued", sink="database") == 5

    await sw.on()  # the database is back: the queued records are written (backoff: ~1-2 s)
    found = await wait_rows(config_dsn, "SELECT * FROM request_logs", 5)
    assert len(found) == 5
    metrics = await scrape(http, url)
    assert sample(metrics, "llm_proxy_request_log_written_total", sink="database") == 5
    assert sample(metrics, "llm_proxy_request_log_queued", sink="database") == 0


def record(ts: float, request_id: str = "r1") -> RequestRecord:
    return RequestRecord(
        ts, request_id, "k", "curl", "POST", "/v1/chat/completions", "m", "m", "p", ["p"],
        200, 1.5, None, 1, 2, 0.5, False, None, None, None,
        [ErrorRecord(ts, request_id, "q", "timeout", None, None, "slow")],
    )  # fmt: skip


async def test_retention_drops_expired_partitions_and_creates_the_next_ones(
    config_dsn: str,
) -> None:
    sink = DatabaseLog(config_dsn, RequestLogSettings(retention_days=0))  # keeps everything
    old = (datetime.now(UTC) - timedelta(days=40)).date()
    conn = await asyncpg.connect(config_dsn)
    try:
        for parent in ("request_logs", "error_logs"):
            await conn.execute("SELECT llm_proxy_log_partition($1, $2)", parent, old)
        # Rows 40 days old in their partition, one in the DEFAULT partition (no daily
        # partition for 35 days ago), and today's.
        await sink.start()
        for days in (40, 35, 0):
            sink.submit(record(time.time() - days * 86400, f"r{days}"))
        await sink.close()
        assert await conn.fetchval("SELECT count(*) FROM request_logs") == 3
        assert await conn.fetchval("SELECT count(*) FROM error_logs") == 3
        where = await conn.fetch("SELECT tableoid::regclass::text AS t FROM request_logs")
        assert sorted(r["t"] for r in where)[0] == "request_logs_default"

        sink = DatabaseLog(config_dsn, RequestLogSettings(retention_days=30))
        done = await sink.maintain()
        await sink.close()
        tag = old.strftime("%Y%m%d")
        assert ("dropped", f"request_logs_p{tag}") in done
        assert ("dropped", f"error_logs_p{tag}") in done
        assert ("deleted", "request_logs_default") in done
        ids = await conn.fetch("SELECT request_id FROM request_logs")
        assert [r["request_id"] for r in ids] == ["r0"]
        # The days ahead have their partitions; today's row is in today's.
        today = datetime.now(UTC).date()
        for ahead in range(3):
            name = f"request_logs_p{(today + timedelta(days=ahead)).strftime('%Y%m%d')}"
            assert await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", name)
        where = await conn.fetchval("SELECT tableoid::regclass::text FROM request_logs")
        assert where == f"request_logs_p{today.strftime('%Y%m%d')}"
        # The usage rollup outlives the rows.
        assert await conn.fetchval("SELECT sum(requests) FROM usage_daily") == 3
    finally:
        await conn.close()


async def test_queue_is_bounded_and_submit_never_waits() -> None:
    sink = DatabaseLog(
        "postgresql://nobody@127.0.0.1:1/none", RequestLogSettings(queue_size=3, batch_size=10)
    )
    for i in range(5):
        sink.submit(record(time.time(), f"r{i}"))  # no writer running: only queued
    assert (sink.queued, sink.dropped) == (3, 2)


async def test_jsonl_file_is_reopened_after_rotation_and_sigterm_flushes(
    upstream: Upstream, tmp_path: Path, config_dsn: str
) -> None:
    path = tmp_path / "requests.jsonl"
    request_log = {
        "jsonl_path": path,
        "database_url": config_dsn,
        "flush_interval_secs": 30,  # only SIGHUP's reopen, a full batch or SIGTERM write it
        "batch_size": 2,
    }
    config = yaml_config(upstream, request_log=request_log)
    async with serve_process(config, tmp_path) as served, aiohttp.ClientSession() as http:

        async def call() -> str:
            async with http.post(
                served.url + "/v1/chat/completions", json={"model": "m", "messages": []}
            ) as resp:
                assert resp.status == 200
                return resp.headers["x-request-id"]

        def two_lines() -> bool:
            return path.exists() and path.read_text().count("\n") == 2

        first = [await call(), await call()]  # a full batch: written at once
        await eventually(two_lines)
        lines = [json.loads(line) for line in path.read_text().splitlines()]
        assert [line["request_id"] for line in lines] == first
        assert lines[0]["status"] == 200 and lines[0]["ts"].endswith("Z")
        rotated = tmp_path / "requests.jsonl.1"
        os.rename(path, rotated)
        served.proc.send_signal(signal.SIGHUP)
        # The handler asks for the reopen before it reloads the file.
        await eventually(lambda: b'"config_reloaded"' in served.log)
        later = [await call(), await call()]
        await eventually(two_lines)
        assert [json.loads(x)["request_id"] for x in path.read_text().splitlines()] == later
        assert rotated.read_text().count("\n") == 2
        last = await call()  # queued only (flush interval 30 s): SIGTERM must write it
    # serve_process stopped it with SIGTERM.
    assert served.proc.returncode == 0
    assert json.loads(path.read_text().splitlines()[-1])["request_id"] == last
    found = await rows(config_dsn, "SELECT request_id FROM request_logs")
    assert {r["request_id"] for r in found} == {*first, *later, last}


async def test_jsonl_sink_writes_what_the_database_gets(tmp_path: Path) -> None:
    path = tmp_path / "x.jsonl"
    sink = JsonlLog(str(path), RequestLogSettings())
    await sink.start()
    sink.submit(record(1_700_000_000.25))
    await sink.close()
    (line,) = path.read_text().splitlines()
    data = json.loads(line)
    assert data["ts"] == "2023-11-14T22:13:20.250000Z"
    assert data["errors"] == [
        {
            "ts": "2023-11-14T22:13:20.250000Z",
            "request_id": "r1",
            "provider": "q",
            "outcome": "timeout",
            "upstream_status": None,
            "body": None,
            "detail": "slow",
        }
    ]
    assert data["cost_usd"] == 0.5 and data["attempts"] == ["p"]


async def test_steady_traffic_is_written_in_full_batches(tmp_path: Path) -> None:
    """Past a first batch, a writer takes only full ones: the remainder waits for the next
    interval (a stream of tiny batches, one round trip each, cost 15% of the proxy's CPU)."""
    path = tmp_path / "x.jsonl"
    sink = JsonlLog(str(path), RequestLogSettings(batch_size=10, flush_interval_secs=3))
    await sink.start()
    try:
        for i in range(25):
            sink.submit(record(time.time(), f"r{i}"))
        await eventually(lambda: sink.written >= 20)
        # Real time: nothing is to happen, time enough to write the last 5 if it would.
        await asyncio.sleep(0.2)
        assert (sink.written, sink.queued) == (20, 5)
    finally:
        await sink.close()
    assert sink.written == 25 and len(path.read_text().splitlines()) == 25


async def test_models_equal_once_cleaned_share_one_usage_row(config_dsn: str) -> None:
    """`a\\x00` is stored as `a\\ufffd`: in one batch with `a\\ufffd` itself they must sum into
    one usage row (two would be one upsert touching a row twice: the batch refused)."""
    sink = DatabaseLog(config_dsn, RequestLogSettings())
    await sink.start()
    now = time.time()
    for i, model in enumerate(("a\x00", "a\ufffd")):
        r = record(now, f"r{i}")
        r.model = model
        sink.submit(r)
    await sink.close()
    assert (sink.written, sink.dropped) == (2, 0)
    usage = await rows(config_dsn, "SELECT model, requests FROM usage_daily")
    assert [(u["model"], u["requests"]) for u in usage] == [("a\ufffd", 2)]


@pytest.mark.parametrize(
    ("body", "summary"),
    [
        (
            b'{"error": {"message": "your prompt: hi", "type": "server_error", "code": 5}}',
            {"type": "server_error", "code": 5},
        ),
        (b'data: {"error": {"message": "m", "type": "overloaded"}}\n\n', {"type": "overloaded"}),
        (b'{"error": {"message": "m", "code": null}}', None),
        (b'{"error": "a message only"}', None),
        (b"<html>Bad gateway</html>", None),
        (b'{"error": {"type": "' + b"x" * 500 + b'"}}', {"type": "x" * 100}),
    ],
)
def test_error_summary_keeps_type_and_code_only(body: bytes, summary: Any) -> None:
    found = error_summary(body)
    assert (orjson.loads(found) if found is not None else None) == summary


async def test_close_lets_a_batch_in_flight_arrive(config_dsn: str) -> None:
    """SIGTERM's flush while a full batch is being written: that batch arrives (it was cut off
    mid-write, lost uncounted, its connection left inside a transaction that the final flush
    then wrote into and the close rolled back), and so does what waited behind it."""
    sink = DatabaseLog(config_dsn, RequestLogSettings(batch_size=2, flush_interval_secs=30))
    await sink.start()
    sink.submit(record(time.time(), "a"))
    sink.submit(record(time.time(), "b"))  # a full batch: the task takes it and writes it
    await eventually(lambda: sink.queued == 0, interval=0)  # taken: the write is in flight
    sink.submit(record(time.time(), "c"))  # less than a batch: waits for the final flush
    await sink.close()
    found = await rows(config_dsn, "SELECT request_id FROM request_logs")
    assert sorted(r["request_id"] for r in found) == ["a", "b", "c"]
    assert (sink.written, sink.dropped) == (3, 0)


async def test_both_sinks_write_what_the_cache_said(config_dsn: str, tmp_path: Path) -> None:
    """`RequestRecord.cache` (migration 015) is in the row and in the JSON line: hit, miss,
    bypass, or null when the cache did not look at the request."""
    path = tmp_path / "x.jsonl"
    database, jsonl = (
        DatabaseLog(config_dsn, RequestLogSettings()),
        JsonlLog(str(path), RequestLogSettings()),
    )
    for sink in (database, jsonl):
        await sink.start()
    now = time.time()
    said = [*CACHE_RESULTS, None]
    for i, cache in enumerate(said):
        r = record(now + i, f"r{i}")
        r.cache = cache
        database.submit(r)
        jsonl.submit(r)
    for sink in (database, jsonl):
        await sink.close()
    found = await rows(config_dsn, "SELECT request_id, cache FROM request_logs ORDER BY ts")
    assert [(r["request_id"], r["cache"]) for r in found] == [
        ("r0", "hit"),
        ("r1", "miss"),
        ("r2", "bypass"),
        ("r3", None),
    ]
    assert [json.loads(line)["cache"] for line in path.read_text().splitlines()] == said


async def test_migration_015_adds_the_cache_column_to_every_partition(config_dsn: str) -> None:
    """The column and its partial index reach the partitions there are and those made later
    (`llm_proxy_log_partition`); down removes both, up puts them back."""
    conn = await asyncpg.connect(config_dsn)
    columns = (
        "SELECT table_name FROM information_schema.columns WHERE column_name = 'cache' "
        "AND table_name LIKE 'request_logs%' ORDER BY table_name"
    )
    indexes = (
        "SELECT tablename FROM pg_indexes WHERE indexdef LIKE '%(cache, ts) WHERE (cache IS NOT "
        "NULL)' ORDER BY tablename"
    )
    try:
        later = (datetime.now(UTC) + timedelta(days=30)).date()
        assert await conn.fetchval("SELECT llm_proxy_log_partition('request_logs', $1)", later)
        tables = [
            r["t"]
            for r in await conn.fetch(
                "SELECT c.relname AS t FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                "WHERE i.inhparent = 'request_logs'::regclass"
            )
        ]
        assert f"request_logs_p{later:%Y%m%d}" in tables and "request_logs_default" in tables
        expected = sorted(["request_logs", *tables])
        assert [r["table_name"] for r in await conn.fetch(columns)] == expected
        assert [r["tablename"] for r in await conn.fetch(indexes)] == expected
        since = [m for m in migrate.discover() if m.version >= 15]  # 015 and any later
        reverted = await migrate.migrate_down(conn, len(since))
        assert reverted[-1].name == "request_log_cache"
        assert await conn.fetch(columns) == [] and await conn.fetch(indexes) == []
        assert [m.name for m in await migrate.migrate_up(conn)] == [m.name for m in since]
        assert len(await conn.fetch(indexes)) == len(expected)
    finally:
        await conn.close()


async def test_the_cache_word_of_each_request_reaches_the_row_the_line_and_the_access_line(
    upstream: Upstream, start_proxy: ProxyFactory, config_dsn: str, tmp_path: Path
) -> None:
    """A real proxy with a memory cache: a miss, a hit (its provider `cache`), the same asked
    as a stream (a hit too), a `no-store` request (bypass), and an endpoint the cache never
    looks at (null), in the database, the JSON lines and the access line alike."""
    path = tmp_path / "requests.jsonl"
    url = await start_proxy(
        make_config(
            provider("up", upstream.api_base, {"gpt-4o-mini": None}),
            master_keys=KEYS,
            cache={"backend": "memory"},
            request_log=log_settings(database_url=config_dsn, jsonl_path=str(path)),
        )
    )
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
    asked = [
        ({**body, "temperature": 0}, {}),
        ({**body, "temperature": 0}, {}),
        ({**body, "temperature": 0, "stream": True}, {}),
        ({**body, "temperature": 0}, {"Cache-Control": "no-store"}),
    ]
    said = []
    with structlog.testing.capture_logs() as logs:
        async with aiohttp.ClientSession(
            headers={"Authorization": "Bearer sk-team-a-0123456789"}
        ) as http:
            for data, headers in asked:
                async with http.post(
                    url + "/v1/chat/completions", json=data, headers=headers
                ) as resp:
                    assert resp.status == 200
                    await resp.read()
                    said.append(resp.headers["x-llm-proxy-cache"])
            async with http.get(url + "/v1/models") as resp:
                assert resp.status == 200 and "x-llm-proxy-cache" not in resp.headers
    assert said == ["miss", "hit", "hit", "bypass"]
    expected = [
        ("miss", "up"),
        ("hit", "cache"),
        ("hit", "cache"),
        ("bypass", "up"),
        (None, "none"),
    ]
    found = await wait_rows(
        config_dsn, "SELECT cache, provider, path FROM request_logs ORDER BY ts, id", 5
    )
    assert [(r["cache"], r["provider"]) for r in found] == expected
    await eventually(lambda: len(path.read_text().splitlines()) == 5 if path.exists() else False)
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [(line["cache"], line["provider"]) for line in lines] == expected
    access = [e for e in logs if e["event"] == "request" and e["path"].startswith("/v1/")]
    assert [(e["cache"], e["provider"]) for e in access] == expected


async def test_the_team_of_each_requests_key_reaches_the_row_the_line_and_the_usage(
    upstream: Upstream, start_proxy: ProxyFactory, config_dsn: str, tmp_path: Path
) -> None:
    """Migration 018: a request of a key in a team names the team in its row, its JSON line
    and its usage rollup row; a key in no team has none (NULL, null, '')."""
    path = tmp_path / "requests.jsonl"
    url = await start_proxy(
        make_config(
            provider("up", upstream.api_base, {"gpt-4o-mini": None}),
            teams=[{"name": "search", "max_budget_usd": 5}],
            master_keys=[
                {"name": "member", "key": "sk-member-0123456789", "team": "search"},
                *KEYS,
            ],
            pricing=PRICING,
            request_log=log_settings(database_url=config_dsn, jsonl_path=str(path)),
        )
    )
    for key in ("sk-member-0123456789", "sk-team-a-0123456789", "sk-member-0123456789"):
        async with sdk(url, key) as client:
            await ask(client, "gpt-4o-mini")
    expected = [("member", "search"), ("team-a", None), ("member", "search")]
    found = await wait_rows(config_dsn, "SELECT key_name, team FROM request_logs ORDER BY ts", 3)
    assert [(r["key_name"], r["team"]) for r in found] == expected
    await eventually(lambda: len(path.read_text().splitlines()) == 3 if path.exists() else False)
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [(line["key_name"], line["team"]) for line in lines] == expected
    usage = await rows(config_dsn, "SELECT key_name, team, requests, cost_usd FROM usage_daily")
    by = {(u["key_name"], u["team"]): u for u in usage}
    assert set(by) == {("member", "search"), ("team-a", "")}
    assert by[("member", "search")]["requests"] == 2 and by[("member", "search")]["cost_usd"] > 0


async def test_migration_018_adds_the_team_columns_and_down_merges_a_keys_teams(
    config_dsn: str,
) -> None:
    """The request log's `team` column and its partial index reach every partition, those
    made later too; usage_daily's `team` is in its primary key, so a key that changed teams
    in a day has a row per team, which down merges into one."""
    conn = await asyncpg.connect(config_dsn)
    columns = (
        "SELECT table_name FROM information_schema.columns WHERE column_name = 'team' "
        "AND table_name LIKE 'request_logs%' ORDER BY table_name"
    )
    indexes = (
        "SELECT tablename FROM pg_indexes WHERE indexdef LIKE '%(team, ts) WHERE (team IS NOT "
        "NULL)' ORDER BY tablename"
    )
    sink = DatabaseLog(config_dsn, RequestLogSettings())
    since = [m for m in migrate.discover() if m.version >= 18]  # 018 and any later
    try:
        # One key, one day: in team x, then in none (one batch: one upsert, two rows).
        await sink.start()
        now = time.time()
        for i, team in enumerate(("x", None, "x")):
            r = record(now, f"r{i}")
            r.team = team
            sink.submit(r)
        await sink.close()
        assert (sink.written, sink.dropped) == (3, 0)
        usage = "SELECT * FROM usage_daily ORDER BY requests"
        assert [(u["team"], u["requests"], u["cost_usd"]) for u in await conn.fetch(usage)] == [
            ("", 1, 0.5),
            ("x", 2, 1.0),
        ]
        later = (datetime.now(UTC) + timedelta(days=30)).date()
        assert await conn.fetchval("SELECT llm_proxy_log_partition('request_logs', $1)", later)
        expected = await _request_log_tables(conn)
        assert f"request_logs_p{later:%Y%m%d}" in expected and len(expected) > 3
        assert [r["table_name"] for r in await conn.fetch(columns)] == expected
        assert [r["tablename"] for r in await conn.fetch(indexes)] == expected

        reverted = await migrate.migrate_down(conn, len(since))
        assert reverted[-1].name == "request_log_team"
        assert await conn.fetch(columns) == [] and await conn.fetch(indexes) == []
        (merged,) = await conn.fetch(usage)
        assert (merged["key_name"], merged["requests"], merged["cost_usd"]) == ("k", 3, 1.5)
        assert (merged["prompt_tokens"], merged["completion_tokens"]) == (3, 6)
        assert [m.name for m in await migrate.migrate_up(conn)] == [m.name for m in since]
        assert [r["tablename"] for r in await conn.fetch(indexes)] == expected
        assert [(u["team"], u["requests"]) for u in await conn.fetch(usage)] == [("", 3)]
    finally:
        await conn.close()


async def _request_log_tables(conn: asyncpg.Connection) -> list[str]:
    """`request_logs` and its partitions, by name."""
    found = await conn.fetch(
        "SELECT c.relname AS t FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "WHERE i.inhparent = 'request_logs'::regclass"
    )
    return sorted(["request_logs", *(r["t"] for r in found)])
