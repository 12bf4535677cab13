"""The one mutable holder of configuration: `current` is an immutable compiled snapshot that a
reload replaces as a whole. A request reads `current` once and keeps that snapshot to the end."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from llm_proxy.auth import KeyRing
from llm_proxy.config import Config
from llm_proxy.routing import RouteTable, render_models
from llm_proxy.upstream import Upstream, compile_upstream


@dataclass(frozen=True, slots=True)
class Snapshot:
    config: Config
    routes: RouteTable
    keys: KeyRing
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
        keys=KeyRing(config.master_keys, routes.model_names),
        upstreams={p.name: compile_upstream(p, config) for p in config.providers},
        models_body=render_models(routes.model_names),
        max_body_bytes=int(config.max_request_body_mb * 1024 * 1024),
        version=version,
    )


class ConfigStore:
    """Holds the snapshot being served; `swap()` is atomic (one reference assignment).
    Subscribers (the limiter, ...) are told of each new snapshot, in order."""

    def __init__(self, snapshot: Snapshot) -> None:
        self.current = snapshot
        self.subscribers: list[Callable[[Snapshot], None]] = []

    def swap(self, snapshot: Snapshot) -> Snapshot:
        old, self.current = self.current, snapshot
        for notify in self.subscribers:
            notify(snapshot)
        return old
