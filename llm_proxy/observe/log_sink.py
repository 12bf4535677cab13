"""Log lines written in batches by one writer thread, like nginx's `access_log ... buffer=
flush=`: the event loop only appends to a bounded buffer, never waits on a slow disk or a full
pipe (journald, a `| tee`), and never pays a system call per line.

* flushed when `flush_bytes` are waiting, every `flush_secs`, and at `close()` (shutdown);
* bounded: past `max_buffer_bytes` waiting (the reader is stuck), new lines are dropped and
  counted in `dropped` (exported as `llm_proxy_log_lines_dropped_total`), never silently;
* a write error (the reader went away) drops that batch, counted the same way.

It is a binary file-like object, so structlog's `BytesLogger` writes to it as to a file.
"""

from __future__ import annotations

import os
import threading
from typing import Final

FLUSH_BYTES: Final = 64 * 1024
FLUSH_SECS: Final = 0.1
MAX_BUFFER_BYTES: Final = 4 * 1024 * 1024


class BatchedWriter:
    """Bytes for file descriptor `fd`, written by a daemon thread in batches."""

    def __init__(
        self,
        fd: int,
        *,
        flush_bytes: int = FLUSH_BYTES,
        flush_secs: float = FLUSH_SECS,
        max_buffer_bytes: int = MAX_BUFFER_BYTES,
    ) -> None:
        self._fd = fd
        self._flush_bytes = flush_bytes
        self._flush_secs = flush_secs
        self._max = max_buffer_bytes
        self._parts: list[bytes] = []
        self._size = 0
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._closed = False
        self.dropped = 0  # lines (or parts of lines) never written
        self._thread = threading.Thread(target=self._run, name="log-writer", daemon=True)
        self._thread.start()

    # The file-like side, called from the event loop (and any thread).

    def write(self, data: bytes) -> int:
        with self._lock:
            if self._closed or self._size + len(data) > self._max:
                self.dropped += 1
                return 0
            self._parts.append(data)
            self._size += len(data)
            if self._size >= self._flush_bytes:
                self._wake.set()
        return len(data)

    def flush(self) -> None:
        """Nothing here: the writer thread flushes on size, on time and at close()."""

    def close(self, timeout: float = 2.0) -> None:
        """Write what is buffered and stop the thread (at shutdown)."""
        self._closed = True
        self._wake.set()
        self._thread.join(timeout)

    # The writer thread.

    def _take(self) -> list[bytes]:
        with self._lock:
            parts, self._parts, self._size = self._parts, [], 0
        return parts

    def _run(self) -> None:
        while True:
            self._wake.wait(self._flush_secs)
            self._wake.clear()
            parts = self._take()
            if parts:
                self._write_all(b"".join(parts), len(parts))
            if self._closed:
                rest = self._take()  # written between the last take and the close
                if rest:
                    self._write_all(b"".join(rest), len(rest))
                return

    def _write_all(self, data: bytes, lines: int) -> None:
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(self._fd, view) :]
        except OSError:
            with self._lock:
                self.dropped += lines
