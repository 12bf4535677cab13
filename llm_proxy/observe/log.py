"""structlog setup, done once by the entry point. Modules only call `structlog.get_logger()`.

JSON lines (serialised with orjson) unless stderr is a TTY or `LOG_FORMAT=console`. JSON lines
go to stderr through a `BatchedWriter` (`log_sink.py`): written in batches by a thread, so a
request never waits on the log and never pays a system call for its line.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import sys
import time
from collections.abc import Callable
from typing import Any, BinaryIO, cast

import orjson
import structlog

from llm_proxy.observe.log_sink import BatchedWriter


def _orjson_dumps(obj: Any, default: Any = None) -> bytes:
    return orjson.dumps(obj, default=default)


class _Timestamp:
    """ISO-8601 UTC timestamps with microseconds; the date part is formatted once a second
    (structlog's TimeStamper builds a datetime per line, a measurable cost per request)."""

    __slots__ = ("_prefix", "_second")

    def __init__(self) -> None:
        self._second = -1
        self._prefix = ""

    def __call__(self, _: Any, __: str, event: dict[str, Any]) -> dict[str, Any]:
        now = time.time()
        second = int(now)
        if second != self._second:
            self._second = second
            self._prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        event["timestamp"] = f"{self._prefix}.{int((now - second) * 1_000_000):06d}Z"
        return event


_writer: BatchedWriter | None = None
_timestamp = _Timestamp()
_log = structlog.get_logger()
RequestLine = Callable[[dict[str, Any], bool], None]


def _structlog_request(fields: dict[str, Any], quiet: bool) -> None:
    (_log.debug if quiet else _log.info)("request", **fields)


_request_line: RequestLine = _structlog_request


def request(fields: dict[str, Any], quiet: bool = False) -> None:
    """The access line of one request (`quiet`: at debug level, for /health and /metrics).

    In JSON mode it is rendered here, straight into the batched writer: the same line
    structlog would write (fields, then event, level and timestamp) at a fraction of the cost
    of its processor chain, paid once per request.
    """
    _request_line(fields, quiet)


def _json_request_line(level_no: int, writer: BatchedWriter) -> RequestLine:
    info = level_no <= logging.INFO
    debug = level_no <= logging.DEBUG
    dumps, newline = orjson.dumps, orjson.OPT_APPEND_NEWLINE
    stamp, write = _timestamp, writer.write

    def line(fields: dict[str, Any], quiet: bool) -> None:
        if not (debug if quiet else info):
            return
        fields["event"] = "request"
        fields["level"] = "debug" if quiet else "info"
        stamp(None, "", fields)
        write(dumps(fields, option=newline))

    return line


def close() -> None:
    """Write the log lines still buffered (at shutdown)."""
    if _writer is not None:
        _writer.close()


def dropped_lines() -> int:
    """Log lines dropped because stderr's reader could not keep up (0 without batching)."""
    return _writer.dropped if _writer is not None else 0


def configure(log_format: str | None = None, level: str | None = None) -> None:
    log_format = (log_format or os.environ.get("LOG_FORMAT") or "").lower()
    if log_format not in ("json", "console"):
        log_format = "console" if sys.stderr.isatty() else "json"
    level_name = (level or os.environ.get("LOG_LEVEL") or "info").upper()
    level_no = logging.getLevelNamesMapping().get(level_name, logging.INFO)

    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        _timestamp,
    ]
    renderer: Any
    factory: Any
    global _request_line
    _request_line = _structlog_request
    if log_format == "console":
        # Tracebacks without their frames' local variables (rich shows them by default): they
        # hold secrets, a request's Authorization header, a provider's key or query params.
        formatter = (
            structlog.dev.RichTracebackFormatter(show_locals=False)
            if importlib.util.find_spec("rich") is not None
            else structlog.dev.plain_traceback
        )
        renderer = structlog.dev.ConsoleRenderer(exception_formatter=formatter)
        factory = structlog.WriteLoggerFactory(file=sys.stderr)
    else:
        shared.append(structlog.processors.format_exc_info)
        renderer = structlog.processors.JSONRenderer(serializer=_orjson_dumps)
        global _writer  # one per process, as structlog's own configuration is
        if _writer is None:
            sys.stderr.flush()
            _writer = BatchedWriter(sys.stderr.fileno())
        factory = structlog.BytesLoggerFactory(file=cast(BinaryIO, _writer))
        _request_line = _json_request_line(level_no, _writer)
    structlog.configure(
        processors=[*shared, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(level_no),
        logger_factory=factory,
        cache_logger_on_first_use=True,
    )
    # Library loggers (aiohttp, asyncio) go to stderr too; aiohttp's access log is replaced
    # by our own canonical line per request.
    logging.basicConfig(
        level=max(level_no, logging.WARNING), stream=sys.stderr, format="%(message)s"
    )
