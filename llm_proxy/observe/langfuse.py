"""Langfuse export (optional): every sampled request becomes a trace with one generation, sent
in batches to Langfuse's ingestion API (`POST {host}/api/public/ingestion`).

`LangfuseSettings` (the LANGFUSE_* variables) serve both exports: `export` is `otlp` (the
default: spans with the Langfuse attributes, `observe/tracing/langfuse_attrs.py`, sent to
`otlp_url`) or `ingestion` (this module's exporter, for old self-hosted servers only: Langfuse
Cloud removed the batch ingestion API on 2026-11-16; `INGESTION_WARNING` says so).

The request path only appends to a bounded queue (`submit`, sync, never raises); one task
sends. Contract with an unreachable or unhappy Langfuse:

* a connection error, a timeout, a 5xx, a 429 or a 408 keeps the batch and retries it with capped
  exponential backoff (a 429's Retry-After is honoured, within the cap). The same bytes are
  re-sent, so a retry of a batch Langfuse did take is de-duplicated by its event ids;
* meanwhile the queue keeps filling up to `queue_size` records, the held batch included;
  past that, new records are dropped and counted in `dropped`: memory stays bounded, the
  oldest records (the held batch) go first when Langfuse comes back;
* any other answer but a 2xx (bad keys: 401, ingestion suspended: 403, too large: 413, a
  redirect: the host is wrong) drops the batch, counted, with one warning per status until a
  batch is accepted again;
* a 207 whose `errors` name refused events counts them in `rejected`, and their records in
  `dropped` (one warning, then debug lines, until a batch is accepted whole);
* `close()` makes one last attempt, bounded by `close_timeout`; what is left is dropped.

What a record becomes (a trace and its generation, their ids, what content goes with
them) is `observe/langfuse_events.py`; the queue, batches and backoff, `observe/batching.py`.
The secret key is never logged and is not part of `LangfuseSettings`' repr.
"""

from __future__ import annotations

import base64
import io
import math
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import urlsplit

import aiohttp
import orjson
import structlog
from yarl import URL

from llm_proxy import __version__
from llm_proxy.observe.batching import HttpBatcher
from llm_proxy.observe.langfuse_events import encode, events, iso
from llm_proxy.observe.records import RequestRecord

log = structlog.get_logger()

DEFAULT_HOST: Final = "https://cloud.langfuse.com"
DEFAULT_FLUSH_INTERVAL: Final = 5.0  # seconds, as the seed proxy and Langfuse's SDK
INGESTION_PATH: Final = "/api/public/ingestion"
OTLP_PATH: Final = "/api/public/otel/v1/traces"
# LANGFUSE_EXPORT: spans to Langfuse's OTLP endpoint (the default), or the legacy batch
# ingestion API, which Langfuse Cloud removed on 2026-11-16 (old self-hosted servers only).
EXPORTS: Final = ("otlp", "ingestion")
INGESTION_WARNING: Final = (
    "LANGFUSE_EXPORT=ingestion uses Langfuse's legacy batch ingestion API "
    "(/api/public/ingestion), which Langfuse Cloud removed on 2026-11-16: it works only with "
    "old self-hosted Langfuse servers, and this export will be removed from llm-proxy. "
    "Unset LANGFUSE_EXPORT (or set it to otlp) to send traces to Langfuse's OTLP endpoint."
)
# Langfuse takes up to 3.5 MB per request. Batches are cut below 1 MiB, past which aiohttp
# wants a file-like body (a lone larger record is sent as one).
MAX_BATCH_BYTES: Final = 1_000_000
_TRUE: Final = frozenset({"true", "1", "yes"})
_FALSE: Final = frozenset({"false", "0", "no", ""})


def _flag(environ: Mapping[str, str], name: str) -> bool:
    value = environ.get(name, "").strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError(f"{name} must be true/1/yes or false/0/no, got {environ[name]!r}")


@dataclass(frozen=True, slots=True)
class LangfuseSettings:
    public_key: str
    secret_key: str = field(repr=False)
    host: str = DEFAULT_HOST  # no trailing slash
    sample_rate: float = 1.0
    flush_interval: float = DEFAULT_FLUSH_INTERVAL
    debug: bool = False
    capture_content: bool = False
    export: str = "otlp"  # one of EXPORTS (LANGFUSE_EXPORT)

    @property
    def ingestion_url(self) -> str:
        return self.host + INGESTION_PATH

    @property
    def otlp_url(self) -> str:
        """Langfuse's OTLP/HTTP traces endpoint (protobuf or JSON bodies, Basic auth)."""
        return self.host + OTLP_PATH

    def authorization(self) -> str:
        """The `Authorization` header value for either endpoint: Basic, the public key as the
        user name and the secret key as the password (never logged)."""
        return _basic_auth(self.public_key, self.secret_key)

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> LangfuseSettings | None:
        """The settings from LANGFUSE_* variables, None unless LANGFUSE_ENABLED is true.
        A bad value raises ValueError naming the variable (never quoting the secret key)."""
        if not _flag(environ, "LANGFUSE_ENABLED"):
            return None
        public_key = environ.get("LANGFUSE_PUBLIC_KEY", "").strip()
        secret_key = environ.get("LANGFUSE_SECRET_KEY", "").strip()
        for name, value in (
            ("LANGFUSE_PUBLIC_KEY", public_key),
            ("LANGFUSE_SECRET_KEY", secret_key),
        ):
            if not value:
                raise ValueError(f"{name} is required when LANGFUSE_ENABLED is true")
        if ":" in public_key:  # it is the Basic auth user name
            raise ValueError("LANGFUSE_PUBLIC_KEY must not contain ':'")
        return cls(
            public_key=public_key,
            secret_key=secret_key,
            host=_host(environ.get("LANGFUSE_HOST", "").strip() or DEFAULT_HOST),
            sample_rate=_number(
                environ, "LANGFUSE_SAMPLE_RATE", 1.0, "a number from 0 to 1", lambda v: 0 <= v <= 1
            ),
            flush_interval=_number(
                environ,
                "LANGFUSE_FLUSH_INTERVAL",
                DEFAULT_FLUSH_INTERVAL,
                "a number of seconds above 0",
                lambda v: 0 < v < math.inf,
            ),
            debug=_flag(environ, "LANGFUSE_DEBUG"),
            capture_content=_flag(environ, "LANGFUSE_CAPTURE_CONTENT"),
            export=_export(environ),
        )


def _export(environ: Mapping[str, str]) -> str:
    """LANGFUSE_EXPORT: `otlp` (the default, also when empty) or `ingestion`, any case."""
    raw = environ.get("LANGFUSE_EXPORT", "").strip()
    value = raw.lower() or EXPORTS[0]
    if value not in EXPORTS:
        raise ValueError(f"LANGFUSE_EXPORT must be otlp or ingestion, got {raw!r}")
    return value


def _host(value: str) -> str:
    try:
        parts = urlsplit(value)
        _ = parts.port  # raises ValueError on a bad port
    except ValueError:
        raise ValueError(f"LANGFUSE_HOST is not a valid URL: {value!r}") from None
    if parts.username is not None or parts.password is not None:
        raise ValueError("LANGFUSE_HOST must not contain credentials (use the LANGFUSE_*_KEY)")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"LANGFUSE_HOST must be an http:// or https:// URL, got {value!r}")
    if parts.query or parts.fragment:
        raise ValueError(f"LANGFUSE_HOST must not have a query or fragment, got {value!r}")
    return value.rstrip("/")


def _number(
    environ: Mapping[str, str], name: str, default: float, what: str, ok: Callable[[float], bool]
) -> float:
    raw = environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not ok(value):  # NaN fails every comparison
        raise ValueError(f"{name} must be {what}, got {raw!r}")
    return value


@dataclass(slots=True)
class _Batch:
    body: bytes
    event_ids: list[tuple[str, str]]  # per record: its trace's and its generation's event

    def __len__(self) -> int:  # records
        return len(self.event_ids)

    @property
    def events(self) -> int:
        return 2 * len(self.event_ids)


class LangfuseExporter(HttpBatcher[_Batch]):
    """A request-record sink sending to Langfuse (see the module docstring for the contract).

    Counters, for metrics: `written` (records Langfuse accepted), `dropped` (records lost:
    queue full, batch or event refused, left at close), `sent` and `rejected` (events
    accepted and refused, two a record), `failed_batches` (POSTs that failed, retried or
    not); `queued` is what waits (the held batch included).
    """

    name = "langfuse"
    hold_failed = True  # retried as it is: the same event ids, de-duplicated by Langfuse
    crash_event = "langfuse_export_failed"
    task_name = "langfuse-export"

    def __init__(
        self,
        settings: LangfuseSettings,
        *,
        queue_size: int = 10_000,
        batch_size: int = 100,
        min_backoff: float = 1.0,
        max_backoff: float = 60.0,
        request_timeout: float = 10.0,
        close_timeout: float = 5.0,
    ) -> None:
        if queue_size < 1 or batch_size < 1:
            raise ValueError("queue_size and batch_size must be positive")
        super().__init__(
            queue_size=queue_size,
            batch_size=min(batch_size, queue_size),
            flush_interval=settings.flush_interval,
            min_backoff=min_backoff,
            max_backoff=max_backoff,
            close_timeout=close_timeout,
        )
        self.settings = settings
        self._url = URL(settings.ingestion_url)
        self._timeout = aiohttp.ClientTimeout(
            total=request_timeout, connect=min(5.0, request_timeout)
        )
        self._session: aiohttp.ClientSession | None = None
        self._retry_after: float | None = None
        self._warned: set[int] = set()  # statuses of dropped batches already warned about
        self.sent = 0
        self.failed_batches = 0
        self.rejected = 0

    def submit(self, record: RequestRecord) -> None:
        """Queue a record (sampled); never blocks, never raises."""
        rate = self.settings.sample_rate
        if rate < 1.0 and random.random() >= rate:  # noqa: S311 (sampling, not security)
            return
        super().submit(record)

    async def start(self) -> None:
        if self._task is not None:
            return
        self._session = aiohttp.ClientSession(
            timeout=self._timeout,
            headers={
                "Authorization": self.settings.authorization(),
                "Content-Type": "application/json",
                "User-Agent": f"llm-proxy/{__version__}",
            },
        )
        await super().start()
        log.info(
            "langfuse_export_started",
            host=self.settings.host,
            sample_rate=self.settings.sample_rate,
            capture_content=self.settings.capture_content,
        )

    def _lost_at_close(self, records: int) -> None:
        log.warning("langfuse_records_lost_at_close", records=records)

    def _take(self) -> _Batch | None:
        """Up to batch_size records, as one request body of at most MAX_BATCH_BYTES (a lone
        larger record is sent alone). None before `start()`: nothing to send with."""
        if self._session is None:
            return None
        now = iso(time.time())
        capture = self.settings.capture_content
        parts: list[bytes] = []
        ids: list[tuple[str, str]] = []
        size = 0
        while self._queue and len(parts) < self._batch_size:
            record = self._queue.popleft()
            pair = events(record, capture, now)
            part = encode(pair)
            if parts and size + len(part) > MAX_BATCH_BYTES:
                self._queue.appendleft(record)
                break
            parts.append(part)
            ids.append((pair[0]["id"], pair[1]["id"]))
            size += len(part) + 1
        if not parts:
            return None
        metadata = orjson.dumps(
            {"sdk_name": "llm-proxy", "sdk_version": __version__, "batch_size": 2 * len(parts)}
        )
        body = b'{"batch":[' + b",".join(parts) + b'],"metadata":' + metadata + b"}"
        return _Batch(body, ids)

    async def _send(self, batch: _Batch) -> bool:
        """POST one batch; False when it should be retried later (it stays held)."""
        assert self._session is not None
        started = time.monotonic()
        try:
            data = batch.body if len(batch.body) <= MAX_BATCH_BYTES else io.BytesIO(batch.body)
            async with self._session.post(self._url, data=data, allow_redirects=False) as resp:
                status = resp.status
                answer = await resp.read()
                retry_after = resp.headers.get("Retry-After")
        except (aiohttp.ClientError, TimeoutError) as exc:
            return self._failed(batch, f"{type(exc).__name__}: {exc}", None)
        if status in (408, 429) or status >= 500:
            return self._failed(batch, f"HTTP {status}", _seconds(retry_after))
        if status >= 300:
            self.failed_batches += 1
            self.dropped += len(batch)
            event = "langfuse_batch_refused"
            (log.debug if status in self._warned else log.warning)(
                event,
                status=status,
                records=len(batch),
                answer=answer[:300].decode(errors="replace"),
            )
            self._warned.add(status)
            return True
        accepted = self._accepted(batch, answer)
        if self._failures:
            log.info("langfuse_export_recovered", failures=self._failures)
        self._failures, self._retry_after = 0, None
        if self.settings.debug:
            log.info(
                "langfuse_flush",
                status=status,
                events=batch.events,
                accepted=accepted,
                bytes=len(batch.body),
                ms=round((time.monotonic() - started) * 1000, 1),
                queued=len(self._queue),
            )
        return True

    def _failed(self, batch: _Batch, reason: str, retry_after: float | None) -> bool:
        """A failure to retry (the engine counts it in `_failures` when this returns)."""
        self.failed_batches += 1
        self._retry_after = retry_after
        (log.warning if not self._failures else log.debug)(
            "langfuse_send_failed", reason=reason, records=len(batch), queued=self.queued
        )
        return False

    def _accepted(self, batch: _Batch, answer: bytes) -> int:
        """Count a 2xx answer; the events accepted. A 207 lists the events Langfuse refused
        (a v4 server in `events_only` mode refuses every trace and generation sent here): a
        record with a refused event is dropped, with one warning until all are accepted."""
        errors = _errors(answer)
        if not errors:
            self.written += len(batch)
            self.sent += batch.events
            self._warned.clear()
            return batch.events
        refused = {e.get("id") for e in errors}
        lost = sum(1 for ids in batch.event_ids if not refused.isdisjoint(ids))
        accepted = max(0, batch.events - len(errors))
        self.rejected += len(errors)
        self.sent += accepted
        self.written += len(batch) - lost
        self.dropped += lost
        for i, error in enumerate(errors[:20]):
            (log.warning if i == 0 and 207 not in self._warned else log.debug)(
                "langfuse_events_rejected",
                events=len(errors),
                of=batch.events,
                status=error.get("status"),
                message=error.get("message"),
                error=str(error.get("error"))[:1000],
            )
        self._warned.add(207)
        return accepted


def _errors(answer: bytes) -> list[dict[str, Any]]:
    """The `errors` of an ingestion answer ([] when it has none or is not JSON)."""
    try:
        parsed = orjson.loads(answer) if answer else None
    except orjson.JSONDecodeError:
        return []
    errors = parsed.get("errors") if isinstance(parsed, dict) else None
    if not isinstance(errors, list):
        return []
    return [e for e in errors if isinstance(e, dict)]


def _basic_auth(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode("ascii")


def _seconds(value: str | None) -> float | None:
    """A Retry-After in seconds (the HTTP-date form is ignored: the backoff applies)."""
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if 0 <= seconds < math.inf else None
