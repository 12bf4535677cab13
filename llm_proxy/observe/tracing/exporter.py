"""OTLP/HTTP trace export: a request-record sink that turns sampled records into spans and
POSTs them, in batches, to a collector's traces URL (`.../v1/traces`) as OTLP protobuf or
JSON, gzipped or not. The same class sends to any OTLP endpoint (a collector, Langfuse's
`/api/public/otel/v1/traces`): `name` tells them apart in metrics and logs.

The request path only appends a record to a bounded queue (`submit`: O(1), sync, never
raises; records not sampled, or outside `sample_ratio`, are ignored). Spans are built and
encoded in the export task, never on the request path, `SLICE` records at a time with the
event loop free in between (a whole batch at once would hold every request on the loop for
milliseconds). Contract with the collector, as the OTLP/HTTP specification has it:

* a 2xx delivers the batch. An ExportTraceServiceResponse with `partial_success` names
  spans the collector refused: counted in `spans_dropped`, one warning until a batch is
  accepted whole;
* 429, 502, 503, 504, a connection error or a timeout (`timeout`, per POST) keeps the batch
  and retries it as it is (the same bytes) after a capped exponential backoff with jitter,
  from `min_backoff` to `max_backoff`; a Retry-After (seconds or an HTTP date) is honoured
  within the cap;
* meanwhile the queue keeps filling up to `queue_size` records, the held batch included;
  past that, new records are dropped and counted (`dropped`): a dead or slow collector costs
  memory within that bound and nothing else;
* any other status (400, 401, 404, 413, 500, ...) drops the batch, counted, with one warning
  per status until a batch is accepted again;
* `close()` (SIGTERM) lets a POST on its way finish and sends everything that waits, all
  within `close_timeout`; what is left is dropped and counted.

Counters, cheap integers read by /metrics: `written` (records delivered), `dropped` (records
lost), `spans_sent`, `spans_dropped` (spans lost: refused, in a dropped batch, or left at
close), `failed_batches` (POSTs that failed, retried or not), `queued`.

The headers (an API key, Basic auth) are never logged and not in the repr; log lines name
the endpoint without its credentials or query, and never carry a record's content.
"""

from __future__ import annotations

import asyncio
import email.utils
import io
import math
import time
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC
from typing import Final, Literal

import aiohttp
import structlog
from yarl import URL

from llm_proxy import __version__
from llm_proxy.observe.batching import HttpBatcher
from llm_proxy.observe.records import RequestRecord
from llm_proxy.observe.tracing.model import Resource, Span
from llm_proxy.observe.tracing.otlp import (
    JSON,
    PROTOBUF,
    rejected_spans_json,
    rejected_spans_protobuf,
)

log = structlog.get_logger()

Protocol = Literal["http/protobuf", "http/json"]
Compression = Literal["gzip", "none"]

RETRYABLE: Final = frozenset({429, 502, 503, 504})  # OTLP/HTTP: "retryable response codes"
# gzip level 1: a third of level 6's CPU for a few percent more bytes (docs/decisions/0001).
GZIP_LEVEL: Final = 1
# aiohttp warns about (and tests fail on) a bytes body above 1 MiB: larger ones go as a file.
_LARGE_BODY: Final = 1 << 20
_CODECS: Final = {"http/protobuf": PROTOBUF, "http/json": JSON}
# Records built and encoded between two returns to the event loop (about 1-2 ms of CPU): a
# batch of 512 encoded at once would hold the loop, and every request on it, for 10-20 ms.
SLICE: Final = 64
_GZIP_CHUNK: Final = 1 << 16


@dataclass(slots=True)
class _Batch:
    records: list[RequestRecord] | None  # taken from the queue; None once encoded
    count: int  # records
    body: bytes = b""  # encoded (and compressed): re-sent as it is
    spans: int = 0

    def __len__(self) -> int:  # records, as the engine counts
        return self.count


class OtlpExporter(HttpBatcher[_Batch]):
    """A request-record sink exporting spans over OTLP/HTTP (the contract: module docstring)."""

    hold_failed = True  # retried as it is: the same bytes
    crash_event = "otlp_export_failed"
    task_name = "otlp-export"

    def __init__(
        self,
        *,
        name: str,
        endpoint: str,
        headers: Mapping[str, str],
        protocol: Protocol,
        compression: Compression,
        timeout: float,
        resource: Resource,
        build: Callable[[RequestRecord], list[Span]],
        encode: Callable[[RequestRecord], bytes] | None = None,
        sample_ratio: float = 1.0,
        queue_size: int = 2048,
        batch_size: int = 512,
        flush_interval: float = 5.0,
        close_timeout: float = 5.0,
        min_backoff: float = 1.0,
        max_backoff: float = 32.0,
    ) -> None:
        if queue_size < 1 or batch_size < 1:
            raise ValueError("queue_size and batch_size must be positive")
        if not 0.0 <= sample_ratio <= 1.0:
            raise ValueError("sample_ratio must be from 0 to 1")
        if protocol not in _CODECS:
            raise ValueError(f"protocol must be http/protobuf or http/json, got {protocol!r}")
        if compression not in ("gzip", "none"):
            raise ValueError(f"compression must be gzip or none, got {compression!r}")
        super().__init__(
            queue_size=queue_size,
            batch_size=min(batch_size, queue_size),
            flush_interval=flush_interval,
            min_backoff=min_backoff,
            max_backoff=max_backoff,
            close_timeout=close_timeout,
        )
        self.name = name
        self.protocol: Protocol = protocol
        self.compression: Compression = compression
        self._url = URL(endpoint)
        self._headers = dict(headers)  # secrets: only ever handed to the session
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._resource = resource
        self._build = build
        # OTLP/protobuf straight from a record (`spans.encode_spans`: the same bytes as
        # building and encoding, for less CPU); None: build, then encode.
        self._encode_record = encode if protocol == "http/protobuf" else None
        self._codec = _CODECS[protocol]
        # TraceIdRatioBased: keep a trace when its id's low 64 bits are below ratio * 2**64,
        # so every replica (and the client's SDK at the same ratio) keeps the same traces.
        self._bound = round(sample_ratio * 2**64)
        self._session: aiohttp.ClientSession | None = None
        self._retry_after: float | None = None
        self._warned: set[int | str] = set()  # statuses (and "partial") already warned about
        self._build_failed = False
        self.spans_sent = 0
        self.spans_dropped = 0
        self.failed_batches = 0

    def __repr__(self) -> str:
        return f"<OtlpExporter {self.name} {self.protocol} {_safe(self._url)}>"

    def status(self) -> dict[str, object]:
        """For /health/detailed: where spans go (no user info, query or header: secrets may
        live there), what was sent and lost, and whether exports fail right now."""
        return {
            "endpoint": _safe(self._url),
            "protocol": self.protocol,
            "spans_sent": self.spans_sent,
            "spans_dropped": self.spans_dropped,
            "failed_exports": self.failed_batches,
            "failing": self._failures > 0,
        }

    def submit(self, record: RequestRecord) -> None:
        """Queue a sampled record; never blocks, never raises."""
        if not record.sampled or record.trace_id is None:
            return
        if self._bound < 2**64:
            try:
                if int(record.trace_id[16:], 16) >= self._bound:
                    return
            except ValueError:  # not hex: no trace to build spans under
                return
        super().submit(record)

    async def start(self) -> None:
        if self._task is not None:
            return
        headers = {
            "User-Agent": f"llm-proxy/{__version__}",
            "Content-Type": self._codec.content_type,
        }
        if self.compression == "gzip":
            headers["Content-Encoding"] = "gzip"
        self._session = aiohttp.ClientSession(
            timeout=self._timeout, headers=self._headers | headers
        )
        await super().start()
        log.info(
            "otlp_export_started",
            sink=self.name,
            endpoint=_safe(self._url),
            protocol=self.protocol,
            compression=self.compression,
            sample_ratio=self._bound / 2**64,
        )

    def _lost_at_close(self, records: int) -> None:
        # Called before the engine lets go of the held batch: its spans are lost too (records
        # still queued were never built: they count in `dropped` only).
        if self._pending is not None:
            self.spans_dropped += self._pending.spans
        log.warning("otlp_records_lost_at_close", sink=self.name, records=records)

    def _take(self) -> _Batch | None:
        """Up to batch_size records (built and encoded by `_send`, off the request path and
        a slice at a time). None before `start()`: nothing to send with."""
        if self._session is None or not self._queue:
            return None
        queue = self._queue
        records = [queue.popleft() for _ in range(min(len(queue), self._batch_size))]
        return _Batch(records, len(records))

    async def _encode(self, batch: _Batch) -> None:
        """Build the batch's spans and encode them, SLICE records at a time with the event
        loop free in between; then compress, in chunks too. A record whose spans cannot be
        built or encoded (a bug) is dropped alone, counted, logged once. The batch changes
        only at the end: a close() that cuts this off starts it again from the records."""
        assert batch.records is not None
        codec = self._codec
        parts: list[bytes] = []
        count = spans = lost = 0
        records = batch.records
        fast = self._encode_record
        for start in range(0, len(records), SLICE):
            if fast is not None:
                for record in records[start : start + SLICE]:
                    try:
                        encoded = fast(record)
                    except Exception:
                        lost += 1
                        self._bug("otlp_span_encode_failed")
                        continue
                    if encoded:
                        parts.append(encoded)
                        count += 1
                        spans += 1 + len(record.attempt_spans)
                await asyncio.sleep(0)
                continue
            built: list[list[Span]] = []
            for record in records[start : start + SLICE]:
                try:
                    built.append(self._build(record))
                except Exception:
                    lost += 1
                    self._bug("otlp_span_build_failed")
            try:
                parts.append(codec.spans([span for each in built for span in each]))
            except Exception:  # one record's spans, surely: find it
                kept = []
                for each in built:
                    try:
                        parts.append(codec.spans(each))
                    except Exception:
                        lost += 1
                        self._bug("otlp_span_encode_failed")
                    else:
                        kept.append(each)
                built = kept
            count += len(built)
            spans += sum(len(each) for each in built)
            await asyncio.sleep(0)
        body = codec.request(self._resource, parts) if spans else b""
        if body and self.compression == "gzip":
            deflate = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, 31)  # 31: the gzip format
            chunks = []
            for start in range(0, len(body), _GZIP_CHUNK):
                chunks.append(deflate.compress(body[start : start + _GZIP_CHUNK]))
                await asyncio.sleep(0)
            chunks.append(deflate.flush())
            body = b"".join(chunks)
        self.dropped += lost
        batch.records, batch.count, batch.body, batch.spans = None, count, body, spans

    def _bug(self, event: str) -> None:
        """A record lost to a bug: the first one is logged (no content: a traceback names
        code, not values), the rest are only counted."""
        if not self._build_failed:
            self._build_failed = True
            log.exception(event, sink=self.name)

    async def _send(self, batch: _Batch) -> bool:
        """POST one batch; False when it should be retried later (it stays held)."""
        assert self._session is not None
        if batch.records is not None:
            await self._encode(batch)
            if not batch.spans:
                self.written += batch.count  # nothing to export for them: done
                return True
        started = time.monotonic()
        body = batch.body
        try:
            data = body if len(body) <= _LARGE_BODY else io.BytesIO(body)
            async with self._session.post(self._url, data=data, allow_redirects=False) as resp:
                status = resp.status
                answer = await resp.read()
                retry_after = resp.headers.get("Retry-After")
                content_type = resp.content_type
        except (aiohttp.ClientError, TimeoutError) as exc:
            return self._failed(batch, type(exc).__name__, None)
        if status in RETRYABLE:
            return self._failed(batch, f"HTTP {status}", retry_after_seconds(retry_after))
        if not 200 <= status < 300:
            self.failed_batches += 1
            self.dropped += batch.count
            self.spans_dropped += batch.spans
            (log.debug if status in self._warned else log.warning)(
                "otlp_batch_refused",
                sink=self.name,
                status=status,
                spans=batch.spans,
                answer=_answer_text(answer, content_type),
            )
            self._warned.add(status)
            self._recovered()
            return True
        self._accepted(batch, answer, content_type)
        self._recovered()
        log.debug(
            "otlp_flush",
            sink=self.name,
            spans=batch.spans,
            bytes=len(body),
            ms=round((time.monotonic() - started) * 1000, 1),
            queued=len(self._queue),
        )
        return True

    def _recovered(self) -> None:
        """The collector answered (a refusal is an answer): the backoff starts over."""
        if self._failures:
            log.info("otlp_export_recovered", sink=self.name, failures=self._failures)
        self._failures, self._retry_after = 0, None

    def _failed(self, batch: _Batch, reason: str, retry_after: float | None) -> bool:
        """A failure to retry (the engine counts it in `_failures` when this returns)."""
        self.failed_batches += 1
        self._retry_after = retry_after
        (log.warning if not self._failures else log.debug)(
            "otlp_send_failed",
            sink=self.name,
            reason=reason,
            endpoint=_safe(self._url),
            spans=batch.spans,
            queued=self.queued,
        )
        return False

    def _accepted(self, batch: _Batch, answer: bytes, content_type: str) -> None:
        """Count a 2xx; its `partial_success` names spans refused (one warning until a
        batch is accepted whole)."""
        self.written += batch.count
        rejected, message = 0, ""
        if answer:
            decode = self._codec.rejected
            if content_type == "application/json":
                decode = rejected_spans_json
            elif content_type == "application/x-protobuf":
                decode = rejected_spans_protobuf
            try:
                rejected, message = decode(answer)
            except ValueError:
                rejected = 0  # not a response message: the spans were accepted
        rejected = max(0, min(rejected, batch.spans))
        self.spans_sent += batch.spans - rejected
        if not rejected:
            self._warned.clear()
            return
        self.spans_dropped += rejected
        (log.debug if "partial" in self._warned else log.warning)(
            "otlp_spans_rejected",
            sink=self.name,
            rejected=rejected,
            of=batch.spans,
            message=message[:300],
        )
        self._warned.add("partial")


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """A Retry-After header in seconds from now: delay-seconds or an HTTP date; None when
    absent or unreadable (the backoff applies)."""
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = when.timestamp() - (time.time() if now is None else now)
        return max(0.0, seconds)
    return seconds if 0 <= seconds < math.inf else None


def _safe(url: URL) -> str:
    """The URL for a log line: no user info, no query (either may hold a token)."""
    return str(url.with_user(None).with_query(None).with_fragment(None))


def _answer_text(answer: bytes, content_type: str) -> str:
    """A refusal's explanation for the log: text answers only, cut short."""
    if content_type.startswith(("text/", "application/json")):
        return answer[:300].decode(errors="replace")
    return f"<{len(answer)} bytes {content_type}>"
