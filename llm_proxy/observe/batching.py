"""One engine for the sinks that send request records in batches, off the request path (the
request log's database and file, Langfuse).

`submit()` appends to a bounded queue and returns: past `queue_size` records waiting, new ones
are dropped and counted (`dropped`), so memory stays bounded and requests never wait. One task
sends: every `flush_interval`, or as soon as a batch is full, it sends what waits, in batches.
Past the first batch, only full ones: the rest waits for the next flush, so steady traffic goes
in full batches (a few round trips a second), never in a stream of small ones. A batch that
fails is retried after a backoff doubling from `min_backoff` to `max_backoff`; the queue fills
meanwhile, within its bound. `close()` lets a batch on its way arrive, stops the task and sends
everything that waits, all within `close_timeout`; what is left is dropped and counted.

Subclasses say what a batch is (`_take`) and how it is sent (`_send`), and what becomes of a
batch that failed:
* held (`hold_failed`, Langfuse): it counts against `queue_size` from the moment it is taken
  until it is done, and is retried as it is (the same bytes) right after the backoff;
* put back (the request log): out of the queue while it is written, back at the queue's front
  after a failure as far as there is room (`_put_back`, the rest dropped and counted), to go
  with the first flush after the backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections import deque
from collections.abc import Sized
from typing import TYPE_CHECKING, ClassVar, Generic, TypeVar

import structlog

from llm_proxy.observe.records import RequestRecord
from llm_proxy.tasks import stop_task

if TYPE_CHECKING:
    import aiohttp

log = structlog.get_logger()

B = TypeVar("B", bound=Sized)  # a batch; its len() is its number of records


class Batcher(Generic[B]):
    """The queue, the sending task and its backoff; subclasses take and send a batch.

    Counters, for metrics: `written` (records delivered, counted by `_send`), `dropped`
    (records lost); `queued` is what waits (a held batch included)."""

    name = "sink"  # the `sink` label of its metrics
    hold_failed: ClassVar[bool] = False
    crash_event: ClassVar[str] = "record_export_failed"  # a bug: logged, retried after backoff
    task_name: ClassVar[str | None] = None

    def __init__(
        self,
        *,
        queue_size: int,
        batch_size: int,
        flush_interval: float,
        min_backoff: float,
        max_backoff: float,
        close_timeout: float,
    ) -> None:
        self._queue: deque[RequestRecord] = deque()
        self._queue_size = queue_size
        self._batch_size = batch_size
        self._interval = flush_interval
        self._min_backoff = min_backoff
        self._max_backoff = max_backoff
        self._close_timeout = close_timeout
        self._pending: B | None = None  # held: taken from the queue, not yet done
        self._held = 0  # its records, counted against queue_size
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self._busy = False  # the task is sending (or in `_tick`), not waiting for a flush
        # Consecutive failures: one more each time `_send` fails (or raises); `_send` sets it
        # back to 0 when the destination takes a batch again.
        self._failures = 0
        self.written = 0
        self.dropped = 0

    @property
    def queued(self) -> int:
        return len(self._queue) + self._held

    def submit(self, record: RequestRecord) -> None:
        """Queue a record; never blocks, never raises (called on the request path)."""
        queue = self._queue
        if self._closed or len(queue) + self._held >= self._queue_size:
            self.dropped += 1
            return
        queue.append(record)
        if len(queue) == self._batch_size:
            self._wake.set()

    async def start(self) -> None:
        if self._task is None:
            loop = asyncio.get_running_loop()
            self._task = loop.create_task(self._run(), name=self.task_name)

    async def close(self) -> None:
        """Stop the task, send everything that waits (bounded by `close_timeout`), drop (and
        count) what is left, release the subclass's resources."""
        self._closed = True
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._close_timeout
        task, self._task = self._task, None
        if task is not None and self._busy:
            # A batch is on its way: let it arrive (the task ends after it) rather than cut
            # it off mid-write, where it would be lost uncounted and its connection left
            # inside a transaction. A task between flushes is cancelled at once.
            self._wake.set()
            await asyncio.wait({task}, timeout=self._close_timeout)
        await stop_task(task)
        try:
            async with asyncio.timeout_at(deadline):
                await self._drain(everything=True)
        except TimeoutError:
            pass
        except Exception:
            log.exception(self.crash_event)
        left = self.queued
        if left:
            self.dropped += left
            self._lost_at_close(left)
        self._queue.clear()
        self._pending, self._held = None, 0
        await self._shutdown()

    async def _run(self) -> None:
        while not self._closed:
            await self._next_flush()
            self._wake.clear()
            self._busy = True
            try:
                await self._tick()
                await self._drain()
            except Exception:
                # A bug must not end the export for good: log it, retry after a pause.
                log.exception(self.crash_event)
                self._failures += 1
            finally:
                self._busy = False

    async def _next_flush(self) -> None:
        """After a failure, the backoff: then a held batch is retried at once, put-back
        records wait for the next flush. The next flush: after `flush_interval`, or as soon
        as a batch is full."""
        if self._failures:
            await asyncio.sleep(self._retry_delay())
            if self.hold_failed:
                return
        if len(self._queue) < self._batch_size:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._interval):
                    await self._wake.wait()

    def _retry_delay(self) -> float:
        return min(self._max_backoff, self._min_backoff * 2.0 ** min(self._failures - 1, 16))

    async def _drain(self, everything: bool = False) -> None:
        """Send what waits, in batches, until one fails. Past the first batch, only full ones,
        unless `everything` (at close)."""
        first = True
        while True:
            batch = self._pending
            if batch is None:
                if not (first or everything or len(self._queue) >= self._batch_size):
                    return
                first = False
                batch = self._take()
                if batch is None:
                    return
                if self.hold_failed:
                    self._pending, self._held = batch, len(batch)
            if not await self._send(batch):
                self._failures += 1
                return
            self._pending, self._held = None, 0

    def _put_back(self, records: list[RequestRecord]) -> None:
        """Records of a failed batch back at the queue's front, in order, as far as the queue
        has room; the rest is dropped (and counted)."""
        room = max(0, self._queue_size - len(self._queue))
        if room < len(records):
            self.dropped += len(records) - room
            records = records[:room]
        self._queue.extendleft(reversed(records))

    def _take(self) -> B | None:
        """The next batch out of the queue (None: nothing to send)."""
        raise NotImplementedError

    async def _send(self, batch: B) -> bool:
        """Send `batch`, counting it in `written` (or `dropped` if it can never be sent);
        False when it failed and is to be retried (put back first, unless held)."""
        raise NotImplementedError

    async def _tick(self) -> None:
        """Periodic work before each flush (the database's partition maintenance)."""

    def _lost_at_close(self, records: int) -> None:
        """Log the records `close()` could not send (already counted in `dropped`)."""

    async def _shutdown(self) -> None:
        """Release resources after the last flush."""


class HttpBatcher(Batcher[B]):
    """A batcher sending over HTTP with one aiohttp session (Langfuse, OTLP): its backoff has
    jitter (replicas do not retry in step) and waits at least a Retry-After the destination
    gave (`_retry_after`, set by `_send`, within `max_backoff`); the session is closed after
    the last flush."""

    _session: aiohttp.ClientSession | None = None
    _retry_after: float | None = None

    async def _shutdown(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _retry_delay(self) -> float:
        delay = super()._retry_delay()
        delay *= random.uniform(0.5, 1.0)  # noqa: S311 (jitter, not a secret)
        if self._retry_after is not None:
            delay = max(delay, min(self._retry_after, self._max_backoff))
        return delay
