"""The request log: records written to PostgreSQL (`request_logs`, `error_logs`, the
`usage_daily` rollup) and/or a JSON-lines file, never on the request path.

`submit()` appends to a bounded queue and returns; one background task per sink writes the
queue in batches (at `batch_size` records or every `flush_interval_secs`; the engine is
`observe/batching.py`). A full queue drops new records and counts them
(`llm_proxy_request_log_dropped_total{sink}`). A database that is down or slow only fills the
queue: the batch is put back and retried with backoff, and requests never wait for it. At
shutdown (SIGTERM) the queue is flushed within a few seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta
from typing import Any, Final

import orjson
import structlog

from llm_proxy.config.model import RequestLogSettings
from llm_proxy.observe.batching import Batcher
from llm_proxy.observe.records import RequestRecord

log = structlog.get_logger()

_CLOSE_SECS: Final = 5.0  # the last flush at shutdown, at most
_WRITE_TIMEOUT_SECS: Final = 10.0  # one batch, at most (a hung database is a failed write)
_CONNECT_TIMEOUT_SECS: Final = 5.0
_MAX_BACKOFF_SECS: Final = 30.0
_MAINTAIN_EVERY_SECS: Final = 3600.0
# pg_advisory lock key for log maintenance ("llml"): one instance at a time runs it.
_MAINTAIN_LOCK: Final = 0x6C6C6D6C
# SQLSTATE classes of a batch refused for what it holds (retrying cannot help): cardinality,
# data exception, integrity constraint, program limit (a row too big).
_REFUSED_FOR_CONTENT: Final = frozenset({"21", "22", "23", "54"})


class Retry(Exception):
    """The batch could not be written for a reason already logged: retry it later."""


class RequestLogSink(Batcher[list[RequestRecord]]):
    """A request-log destination: batches of up to `batch_size` records, each written within
    `_WRITE_TIMEOUT_SECS`; a batch that failed is put back in the queue. Subclasses write one
    batch (`_write`)."""

    def __init__(self, settings: RequestLogSettings) -> None:
        super().__init__(
            queue_size=settings.queue_size,
            batch_size=settings.batch_size,
            flush_interval=settings.flush_interval_secs,
            min_backoff=1.0,
            max_backoff=_MAX_BACKOFF_SECS,
            close_timeout=_CLOSE_SECS,
        )
        self._content = settings.capture_content

    def _take(self) -> list[RequestRecord] | None:
        queue = self._queue
        return [queue.popleft() for _ in range(min(self._batch_size, len(queue)))] or None

    async def _send(self, batch: list[RequestRecord]) -> bool:
        try:
            async with asyncio.timeout(_WRITE_TIMEOUT_SECS):
                await self._write(batch)
        except Retry:
            pass
        except asyncio.CancelledError:
            # Cut off mid-write (a close past its wait): the batch goes back for the final
            # flush, and the connection, maybe inside a transaction, is dropped.
            self._put_back(batch)
            await self._disconnect()
            raise
        except Exception as exc:  # any failure: retry later, never crash
            log.warning(
                "request_log_write_failed",
                sink=self.name,
                error=type(exc).__name__,
                detail=str(exc)[:200],
                records=len(batch),
            )
            await self._disconnect()
        else:
            self._failures = 0
            return True
        self._put_back(batch)
        return False

    def _lost_at_close(self, records: int) -> None:
        log.error("request_log_lost_at_shutdown", sink=self.name, records=records)

    async def _write(self, batch: list[RequestRecord]) -> None:
        """Write `batch` (counting it in `written`, or in `dropped` if it can never be
        written). Raise to have it retried later."""
        raise NotImplementedError

    async def _disconnect(self) -> None:
        """Forget a connection that failed."""


def clean(text: str | None) -> str | None:
    """Text PostgreSQL accepts: no NUL, no lone surrogates (a client can send both in JSON)."""
    if text is None:
        return None
    if "\x00" in text:
        text = text.replace("\x00", "\ufffd")
    if not text.isascii():
        text = text.encode("utf-8", "replace").decode("utf-8")
    return text


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


_REQUEST_COLUMNS: Final = (
    "ts",
    "request_id",
    "key_name",
    "client",
    "method",
    "path",
    "model",
    "model_sent",
    "provider",
    "attempts",
    "status",
    "duration_ms",
    "ttft_ms",
    "prompt_tokens",
    "completion_tokens",
    "cost_usd",
    "streamed",
    "error_code",
    "prompt",
    "completion",
    "trace_id",
    "fallback_from",
    "fallback_reason",
    "rule",
    "cache",
    "team",
)
_ERROR_COLUMNS: Final = (
    "ts",
    "request_id",
    "provider",
    "outcome",
    "upstream_status",
    "body",
    "detail",
)
_UPSERT_USAGE: Final = """
INSERT INTO usage_daily AS u
    (day, key_name, team, model, provider, requests, errors, prompt_tokens, completion_tokens,
     cost_usd)
SELECT * FROM unnest($1::date[], $2::text[], $3::text[], $4::text[], $5::text[],
                     $6::bigint[], $7::bigint[], $8::bigint[], $9::bigint[], $10::float8[])
ON CONFLICT (day, key_name, team, model, provider) DO UPDATE SET
    requests = u.requests + EXCLUDED.requests,
    errors = u.errors + EXCLUDED.errors,
    prompt_tokens = u.prompt_tokens + EXCLUDED.prompt_tokens,
    completion_tokens = u.completion_tokens + EXCLUDED.completion_tokens,
    cost_usd = u.cost_usd + EXCLUDED.cost_usd
"""


def request_rows(batch: Iterable[RequestRecord], content: bool) -> list[tuple[Any, ...]]:
    """Rows for COPY; the texts only with `content` (another sink may be the one capturing).
    The client, request id (printable ASCII) and method (a validated token) need no
    cleaning."""
    utc = UTC
    stamp = datetime.fromtimestamp
    return [
        (
            stamp(r.ts, utc),
            r.request_id,
            clean(r.key_name),
            r.client,
            r.method,
            clean(r.path),
            clean(r.model),
            clean(r.model_sent),
            clean(r.provider),
            [clean(a) for a in r.attempts],
            r.status,
            r.duration_ms,
            r.ttft_ms,
            r.prompt_tokens,
            r.completion_tokens,
            r.cost_usd,
            r.streamed,
            r.error_code,
            clean(r.prompt) if content else None,
            clean(r.completion) if content else None,
            r.trace_id,
            clean(r.fallback_from),
            r.fallback_reason,
            clean(r.rule),
            r.cache,
            clean(r.team),
        )
        for r in batch
    ]


def error_rows(batch: Iterable[RequestRecord]) -> list[tuple[Any, ...]]:
    return [
        (
            datetime.fromtimestamp(e.ts, UTC),
            clean(e.request_id),
            clean(e.provider),
            e.outcome,
            e.upstream_status,
            clean(e.body),
            clean(e.detail),
        )
        for r in batch
        for e in r.errors
    ]


def usage_columns(batch: Iterable[RequestRecord]) -> list[list[Any]]:
    """The batch summed per (day, key, team, model, provider), as the upsert's ten arrays,
    sorted (instances upserting the same rows lock them in one order: no deadlock). A key in
    no team is in team `''` (a primary key's column cannot be NULL)."""
    sums: dict[tuple[int, str, str, str, str], list[Any]] = {}
    for r in batch:
        model = (clean(r.model) or "") if r.provider != "none" else ""
        key = (
            int(r.ts // 86400),
            clean(r.key_name) or "",
            clean(r.team) or "",
            model,
            clean(r.provider) or "",
        )
        row = sums.get(key)
        if row is None:
            row = sums[key] = [0, 0, 0, 0, 0.0]
        row[0] += 1
        row[1] += r.status >= 400
        row[2] += r.prompt_tokens or 0
        row[3] += r.completion_tokens or 0
        row[4] += r.cost_usd or 0.0
    columns: list[list[Any]] = [[] for _ in range(10)]
    for group in sorted(sums):
        day, *names = group
        values = (_EPOCH_DAY + timedelta(days=day), *names, *sums[group])
        for i, value in enumerate(values):
            columns[i].append(value)
    return columns


_EPOCH_DAY: Final = date(1970, 1, 1)


class DatabaseLog(RequestLogSink):
    """Records into PostgreSQL with COPY, one transaction per batch (rows and usage rollup)."""

    name = "database"

    def __init__(self, dsn: str, settings: RequestLogSettings) -> None:
        super().__init__(settings)
        self.dsn = dsn
        self._retention_days = settings.retention_days
        self._conn: Any = None
        self._maintained_at = -_MAINTAIN_EVERY_SECS
        self._schema_missing_logged = False
        self._maintained = False

    async def _connection(self) -> Any:
        if self._conn is None or self._conn.is_closed():
            from llm_proxy.config.database import connect

            self._conn = await connect(
                self.dsn,
                connect_timeout=_CONNECT_TIMEOUT_SECS,
                name="llm-proxy request log",
                # A log, not a ledger: a database crash may lose its last fraction of a
                # second of records, and commits never wait for the disk.
                settings={"synchronous_commit": "off"},
            )
        return self._conn

    async def _write(self, batch: list[RequestRecord]) -> None:
        import asyncpg

        if not self._maintained:
            await self._tick()  # today's partitions exist before the first row is written
        conn = await self._connection()
        try:
            async with conn.transaction():
                await conn.copy_records_to_table(
                    "request_logs",
                    records=request_rows(batch, self._content),
                    columns=_REQUEST_COLUMNS,
                )
                errors = error_rows(batch)
                if errors:
                    await conn.copy_records_to_table(
                        "error_logs", records=errors, columns=_ERROR_COLUMNS
                    )
                await conn.execute(_UPSERT_USAGE, *usage_columns(batch))
        except asyncpg.UndefinedTableError:
            if not self._schema_missing_logged:
                self._schema_missing_logged = True
                log.error(
                    "request_log_schema_missing",
                    fix="run `llm-proxy migrate up` against the request log's database",
                )
            raise Retry from None  # kept until the tables exist, within the queue bound
        except asyncpg.PostgresError as exc:
            if (exc.sqlstate or "")[:2] not in _REFUSED_FOR_CONTENT:
                raise  # the server's condition (shutting down, out of disk...): retried
            # A batch the database refuses for its content would be refused forever.
            self.dropped += len(batch)
            log.error(
                "request_log_batch_refused",
                error=type(exc).__name__,
                detail=str(exc)[:200],
                records=len(batch),
            )
            return
        self._schema_missing_logged = False
        self.written += len(batch)

    async def _tick(self) -> None:
        now = time.monotonic()
        if now - self._maintained_at < _MAINTAIN_EVERY_SECS:
            return
        self._maintained_at = now
        try:
            await self.maintain()
            self._maintained = True
        except Exception as exc:  # retried at the next run
            self._maintained_at = now - _MAINTAIN_EVERY_SECS + 60  # again in a minute
            log.warning("request_log_maintenance_failed", error=type(exc).__name__)
            await self._disconnect()

    async def maintain(self) -> list[tuple[str, str]]:
        """Partitions for the next days, expired ones dropped (one instance at a time)."""
        conn = await self._connection()
        async with asyncio.timeout(60):
            if not await conn.fetchval("SELECT pg_try_advisory_lock($1)", _MAINTAIN_LOCK):
                return []
            try:
                rows = await conn.fetch(
                    "SELECT action, partition_name FROM llm_proxy_maintain_logs($1)",
                    self._retention_days,
                )
            finally:
                await conn.execute("SELECT pg_advisory_unlock($1)", _MAINTAIN_LOCK)
        done = [(r["action"], r["partition_name"]) for r in rows]
        if done:
            log.info("request_log_maintenance", changes=[f"{a} {p}" for a, p in done])
        return done

    async def _disconnect(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.terminate()

    async def _shutdown(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(2):
                    await conn.close()


class JsonlLog(RequestLogSink):
    """Records as JSON lines appended to a file; `reopen()` (SIGHUP) starts a new file after
    logrotate moved the old one."""

    name = "jsonl"

    def __init__(self, path: str, settings: RequestLogSettings) -> None:
        super().__init__(settings)
        self.path = path
        self._file: Any = None
        self._reopen = False

    def reopen(self) -> None:
        self._reopen = True

    async def _write(self, batch: list[RequestRecord]) -> None:
        dumps, newline = orjson.dumps, orjson.OPT_APPEND_NEWLINE
        lines = []
        for record in batch:
            data = record.as_dict()
            data["ts"] = iso(record.ts)
            if not self._content:
                data["prompt"] = data["completion"] = None
            for error in data["errors"]:
                error["ts"] = iso(error["ts"])
            lines.append(dumps(data, option=newline))
        await asyncio.to_thread(self._append, b"".join(lines))
        self.written += len(batch)

    def _append(self, data: bytes) -> None:
        if self._reopen and self._file is not None:
            self._file.close()
            self._file = None
        self._reopen = False
        if self._file is None:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
            self._file = os.fdopen(fd, "ab", buffering=0)
        self._file.write(data)

    async def _disconnect(self) -> None:
        if self._file is not None:
            with contextlib.suppress(OSError):
                self._file.close()
            self._file = None

    async def _shutdown(self) -> None:
        await self._disconnect()
