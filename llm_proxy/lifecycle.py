"""The process's serving state, shared by the server loop and the handlers."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from llm_proxy.config.model import Config
from llm_proxy.write_watch import WriteWatches

# A request head in total: request line and header lines. aiohttp bounds each line (8 KiB)
# and the number of fields (128), which lets one head reach 1 MB. The first head of a
# connection is bounded as it arrives (`server`, before any key is checked, so an open
# connection costs at most this much); every head is checked again once parsed
# (`middlewares.auth`).
MAX_HEAD_BYTES: Final = 64 * 1024


@dataclass(slots=True)
class ConnectionLimits:
    """How many connections are admitted, from the config the server started with."""

    max_connections: int
    per_client: int  # 0: no per-address limit
    header_timeout_secs: float

    @classmethod
    def of(cls, config: Config) -> ConnectionLimits:
        return cls(
            config.max_connections, config.max_connections_per_client, config.header_timeout_secs
        )


@dataclass(slots=True)
class Refusals:
    """Requests refused with 401 by the proxy, for their throttled log line (see
    `middlewares.observe.LOG_REFUSED_EVERY_SECS`)."""

    unlogged: int = 0  # since the last line
    next_line_at: float = 0.0  # time.perf_counter() before which no line is written


@dataclass(slots=True)
class Lifecycle:
    limits: ConnectionLimits
    draining: bool = False  # SIGTERM received: /health answers 503, no new connections
    in_flight: int = 0  # requests being handled (the observe middleware counts them)
    open_connections: int = 0
    rejected_connections: int = 0  # turned away at max_connections (or per client)
    per_client: dict[str, int] = field(default_factory=dict)  # open connections by address
    inflight_body_bytes: int = 0  # request bodies held in memory by all requests
    spooled_bytes: int = 0  # multipart uploads held by all requests (disk and memory)
    # Every streamed or large answer, checked for a client that stopped reading.
    write_watches: WriteWatches = field(default_factory=WriteWatches)
    refusals: Refusals = field(default_factory=Refusals)
