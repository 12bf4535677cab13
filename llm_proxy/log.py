"""structlog setup, done once by the entry point. Modules only call `structlog.get_logger()`.

JSON lines (serialised with orjson) unless stderr is a TTY or `LOG_FORMAT=console`.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from typing import Any

import orjson
import structlog


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


def configure(log_format: str | None = None, level: str | None = None) -> None:
    log_format = (log_format or os.environ.get("LOG_FORMAT") or "").lower()
    if log_format not in ("json", "console"):
        log_format = "console" if sys.stderr.isatty() else "json"
    level_name = (level or os.environ.get("LOG_LEVEL") or "info").upper()
    level_no = logging.getLevelNamesMapping().get(level_name, logging.INFO)

    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        _Timestamp(),
    ]
    renderer: Any
    factory: Any
    if log_format == "console":
        renderer = structlog.dev.ConsoleRenderer()
        factory = structlog.WriteLoggerFactory(file=sys.stderr)
    else:
        shared.append(structlog.processors.format_exc_info)
        renderer = structlog.processors.JSONRenderer(serializer=_orjson_dumps)
        factory = structlog.BytesLoggerFactory(file=sys.stderr.buffer)
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
