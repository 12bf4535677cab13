"""structlog setup, done once by the entry point. Modules only call `structlog.get_logger()`.

JSON lines (serialised with orjson) unless stderr is a TTY or `LOG_FORMAT=console`.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

import orjson
import structlog


def _orjson_dumps(obj: Any, default: Any = None) -> str:
    return orjson.dumps(obj, default=default).decode()


def configure(log_format: str | None = None, level: str | None = None) -> None:
    log_format = (log_format or os.environ.get("LOG_FORMAT") or "").lower()
    if log_format not in ("json", "console"):
        log_format = "console" if sys.stderr.isatty() else "json"
    level_name = (level or os.environ.get("LOG_LEVEL") or "info").upper()
    level_no = logging.getLevelNamesMapping().get(level_name, logging.INFO)

    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: Any
    if log_format == "console":
        renderer = structlog.dev.ConsoleRenderer()
    else:
        shared.append(structlog.processors.format_exc_info)
        renderer = structlog.processors.JSONRenderer(serializer=_orjson_dumps)
    structlog.configure(
        processors=[*shared, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(level_no),
        logger_factory=structlog.WriteLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    # Library loggers (aiohttp, asyncio) go to stderr too; aiohttp's access log is replaced
    # by our own canonical line per request.
    logging.basicConfig(
        level=max(level_no, logging.WARNING), stream=sys.stderr, format="%(message)s"
    )
