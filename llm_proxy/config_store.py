"""The one mutable holder of configuration: `current` is an immutable compiled snapshot that a
reload replaces as a whole. A request reads `current` once and keeps that snapshot to the end."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field

import orjson

from llm_proxy.config import Config
from llm_proxy.routing import RouteTable
from llm_proxy.upstream import Upstream, compile_upstream


@dataclass(frozen=True, slots=True)
class Snapshot:
    config: Config
    routes: RouteTable
    upstreams: Mapping[str, Upstream]
    models_body: bytes  # the /v1/models answer, rendered once
    max_body_bytes: int
    version: str
    loaded_at: float = field(default_factory=time.time)


def compile_snapshot(config: Config, version: str = "1") -> Snapshot:
    routes = RouteTable(config.providers, config.provider_suffix)
    return Snapshot(
        config=config,
        routes=routes,
        upstreams={p.name: compile_upstream(p, config) for p in config.providers},
        models_body=render_models(routes.model_names),
        max_body_bytes=int(config.max_request_body_mb * 1024 * 1024),
        version=version,
    )


def render_models(names: list[str]) -> bytes:
    return orjson.dumps(
        {
            "object": "list",
            "data": [
                {"id": n, "object": "model", "created": 0, "owned_by": "llm-proxy"} for n in names
            ],
        }
    )


class ConfigStore:
    """Holds the snapshot being served; `swap()` is atomic (one reference assignment)."""

    def __init__(self, snapshot: Snapshot) -> None:
        self.current = snapshot

    def swap(self, snapshot: Snapshot) -> Snapshot:
        old, self.current = self.current, snapshot
        return old
