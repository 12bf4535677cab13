"""How fast the admin API answers from a big request log: `make bench-logs` (default 10
million rows over 30 days).

It fills a scratch database (`llm_proxy_logs_bench`, dropped and made again) through the
real schema (migrations, daily partitions, the usage rollup as the writer maintains it),
then asks a real proxy's admin API each question an operator or the UI asks, 7 times each,
and prints the median and worst time of each. It also times the writer itself: records per
second through `DatabaseLog` (COPY, rollup upsert) into the same tables.

    python -m tests.perf.logs_bench [--rows 10000000] [--dsn postgresql://...] [--keep]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import asyncpg
import uvloop

from llm_proxy.app import create_app
from llm_proxy.config.migrate import migrate_up
from llm_proxy.config.model import RequestLogSettings
from llm_proxy.config.validate import parse_config
from llm_proxy.observe.records import RequestRecord
from llm_proxy.observe.request_log import DatabaseLog
from tests.helpers import serve

DB = "llm_proxy_logs_bench"
DAYS = 30
CHUNK = 1_000_000
ADMIN = "bench-admin-key-0123456789"

# Synthetic traffic: 50 keys, 20 models, 5 providers; 95% 200, 3% 429, 1.5% 500, 0.5% 400.
_FILL = """
INSERT INTO request_logs (ts, request_id, key_name, client, method, path, model, model_sent,
    provider, attempts, status, duration_ms, ttft_ms, prompt_tokens, completion_tokens,
    cost_usd, streamed, error_code)
SELECT
    $1::timestamptz + (i - 1) * $3 * interval '1 microsecond',
    md5(i::text),
    'key-' || (i * 7919 % 50),
    (ARRAY['openai-python','openai-node','curl','langchain','other'])[1 + i % 5],
    'POST',
    '/v1/chat/completions',
    'model-' || (i * 104729 % 20),
    'model-' || (i * 104729 % 20) || '-sent',
    'p' || (i % 5),
    ARRAY['p' || (i % 5)],
    CASE WHEN i % 200 = 0 THEN 400 WHEN i % 67 = 0 THEN 500 WHEN i % 33 = 0 THEN 429
         ELSE 200 END,
    50 + (i % 2000),
    CASE WHEN i % 2 = 0 THEN 20 + (i % 300) END,
    100 + (i % 900),
    20 + (i % 400),
    (100 + (i % 900)) * 2.5e-6 + (20 + (i % 400)) * 1e-5,
    i % 2 = 0,
    NULL
FROM generate_series($2::bigint, $4::bigint) AS i
"""
_FILL_ERRORS = """
INSERT INTO error_logs (ts, request_id, provider, outcome, upstream_status, body, detail)
SELECT ts, request_id, provider,
       CASE status WHEN 429 THEN 'http_429' ELSE 'http_5xx' END, status,
       '{"error": {"message": "busy", "type": "server_error"}}', NULL
FROM request_logs WHERE status IN (429, 500)
"""
_ROLLUP = """
INSERT INTO usage_daily (day, key_name, model, provider, requests, errors, prompt_tokens,
    completion_tokens, cost_usd)
SELECT (ts AT TIME ZONE 'UTC')::date, key_name, coalesce(model, ''), provider, count(*),
       count(*) FILTER (WHERE status >= 400), coalesce(sum(prompt_tokens), 0),
       coalesce(sum(completion_tokens), 0), coalesce(sum(cost_usd), 0)
FROM request_logs GROUP BY 1, 2, 3, 4
"""


def with_database(dsn: str, name: str) -> str:
    from tests.helpers.db import with_database as make

    return make(dsn, name)


async def fill(server_dsn: str, rows: int) -> str:
    admin = await asyncpg.connect(server_dsn)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{DB}" WITH (FORCE)')
        await admin.execute(f'CREATE DATABASE "{DB}"')
    finally:
        await admin.close()
    dsn = with_database(server_dsn, DB)
    conn = await asyncpg.connect(dsn)
    try:
        await migrate_up(conn)
        today = datetime.now(UTC).date()
        for parent in ("request_logs", "error_logs"):
            for back in range(DAYS + 1):
                await conn.execute(
                    "SELECT llm_proxy_log_partition($1, $2)", parent, today - timedelta(days=back)
                )
        start = datetime.now(UTC) - timedelta(days=DAYS)
        step_us = DAYS * 86400 * 1_000_000 // rows
        began = time.monotonic()
        for first in range(1, rows + 1, CHUNK):
            last = min(rows, first + CHUNK - 1)
            await conn.execute(_FILL, start, first, step_us, last, timeout=3600)
            print(
                f"  {last:,} rows ({time.monotonic() - began:.0f} s)", file=sys.stderr, flush=True
            )
        await conn.execute(_FILL_ERRORS, timeout=3600)
        await conn.execute(_ROLLUP, timeout=3600)
        await conn.execute("ANALYZE", timeout=3600)
        size = await conn.fetchval("SELECT pg_size_pretty(pg_database_size(current_database()))")
        print(f"  filled in {time.monotonic() - began:.0f} s; database {size}", file=sys.stderr)
    finally:
        await conn.close()
    return dsn


async def timed(http: aiohttp.ClientSession, url: str, runs: int = 7) -> tuple[float, float, Any]:
    times = []
    body: Any = None
    for _ in range(runs):
        began = time.perf_counter()
        async with http.get(url, headers={"Authorization": f"Bearer {ADMIN}"}) as resp:
            body = await resp.json()
            assert resp.status == 200, body
        times.append((time.perf_counter() - began) * 1000)
    return statistics.median(times), max(times), body


async def questions(dsn: str) -> list[tuple[str, float, float]]:
    config = parse_config(
        {
            "providers": [],
            "require_auth": False,
            "admin_key": ADMIN,
            "request_log": {"database_url": dsn, "enabled": False},
        }
    )
    app = create_app(config)
    from llm_proxy.keys import LOG_DSN

    app[LOG_DSN] = dsn  # the admin API reads the log; this proxy writes none
    out = []
    async with serve(app) as url, aiohttp.ClientSession() as http:
        base = url + "/admin/v1"
        _, _, first = await timed(http, base + "/logs/requests?key=key-7", 1)
        cursor = first["next_cursor"]
        rid = first["data"][0]["request_id"]
        day = (datetime.now(UTC) - timedelta(days=10)).date()
        asked = [
            ("latest 50 requests", "/logs/requests"),
            ("one key, newest 50", "/logs/requests?key=key-7"),
            ("one key, page 2 (cursor)", f"/logs/requests?key=key-7&cursor={cursor}"),
            ("status 5xx, newest 50", "/logs/requests?status=5xx"),
            ("one model, one day", f"/logs/requests?model=model-3&since={day}&until={day}T23:59Z"),
            ("one provider, errors only", "/logs/requests?provider=p2&status=error"),
            ("one request by id (detail)", f"/logs/requests/{rid}"),
            ("failed attempts, one provider", "/logs/errors?provider=p2"),
            ("usage by key, 30 days", "/usage?group_by=key"),
            ("usage by key, model, provider, day", "/usage?group_by=key,model,provider,day"),
            ("usage by day, one key", "/usage?group_by=day&key=key-7"),
        ]  # fmt: skip
        for name, path in asked:
            median, worst, _ = await timed(http, base + path)
            out.append((name, median, worst))
    return out


async def writer_rate(dsn: str, records: int = 100_000) -> float:
    sink = DatabaseLog(dsn, RequestLogSettings(queue_size=records, batch_size=500))
    now = time.time()
    for i in range(records):
        sink.submit(
            RequestRecord(
                now, f"w{i}", f"key-{i % 50}", "curl", "POST", "/v1/chat/completions",
                "model-1", "model-1", "p1", ["p1"], 200, 12.5, 3.0, 100, 20, 0.0005, False,
                None,
            )
        )  # fmt: skip
    began = time.perf_counter()
    await sink.start()
    while sink.queued:
        await asyncio.sleep(0.01)
    await sink.close()
    return records / (time.perf_counter() - began)


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--dsn", default=os.environ.get("LLM_PROXY_TEST_DSN"))
    parser.add_argument("--keep", action="store_true", help="keep the scratch database")
    parser.add_argument("--reuse", action="store_true", help="query an existing one")
    args = parser.parse_args()
    from llm_proxy.observe import log
    from tests.helpers.db import server_dsn

    log.configure("console", "warning")
    uvloop.run(main(args.dsn or server_dsn(), args))


async def main(server: str, args: argparse.Namespace) -> None:
    if args.reuse:
        dsn = with_database(server, DB)
    else:
        print(f"filling {args.rows:,} rows over {DAYS} days...", file=sys.stderr)
        dsn = await fill(server, args.rows)
    try:
        results = await questions(dsn)
        rate = await writer_rate(dsn)
        print(f"\nrequest log: {args.rows:,} rows over {DAYS} days; admin API, 7 runs each\n")
        print(f"| {'question':<38} | median ms | worst ms |")
        print(f"|{'-' * 40}|-----------|----------|")
        for name, median, worst in results:
            print(f"| {name:<38} | {median:9.1f} | {worst:8.1f} |")
        print(f"\nwriter: {rate:,.0f} records/s (COPY in batches of 500, rollup upsert)")
    finally:
        if not args.keep:
            admin = await asyncpg.connect(server)
            try:
                await admin.execute(f'DROP DATABASE IF EXISTS "{DB}" WITH (FORCE)')
            finally:
                await admin.close()


if __name__ == "__main__":
    cli()
