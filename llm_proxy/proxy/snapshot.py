"""The one mutable holder of configuration: `current` is an immutable compiled snapshot that a
reload replaces as a whole. A request reads `current` once and keeps that snapshot to the end."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import structlog

from llm_proxy.config.model import Config
from llm_proxy.proxy.credentials import CredentialRegistry
from llm_proxy.proxy.keyring import KeyRing
from llm_proxy.proxy.routing import RouteTable, render_models
from llm_proxy.proxy.rules import Rules
from llm_proxy.proxy.upstream import Upstream, compile_upstream


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
    rules: Rules | None = None  # routing.rules, compiled (None: none configured)


def compile_snapshot(
    config: Config, version: str = "1", credentials: CredentialRegistry | None = None
) -> Snapshot:
    """`config` compiled; `credentials`: where Vertex's token sources and Bedrock's signers
    live across reloads (the store's)."""
    routes = RouteTable(
        config.providers,
        config.provider_suffix,
        config.routing,
        config.max_attempts,
        config.pricing,
    )
    return Snapshot(
        config=config,
        routes=routes,
        keys=KeyRing(config.master_keys, routes.model_names, config.require_auth, config.teams),
        upstreams={
            p.name: compile_upstream(p, config, credentials=credentials) for p in config.providers
        },
        models_body=render_models(routes.model_names),
        max_body_bytes=int(config.max_request_body_mb * 1024 * 1024),
        version=version,
        rules=Rules(config.routing.rules) if config.routing.rules else None,
    )


class ConfigStore:
    """Holds the snapshot being served; `swap()` is atomic (one reference assignment).
    Subscribers (the limiter, ...) are told of each new snapshot, in order.

    The first snapshot and every swapped-in one that leaves no master key enabled (while
    authentication is required) is logged as `authentication_locked`: the proxy refuses every
    /v1 request then, which an operator revoking keys may mean, but should hear about."""

    def __init__(self, snapshot: Snapshot, credentials: CredentialRegistry | None = None) -> None:
        self.current = snapshot
        # Cloud credentials, shared by every snapshot compiled for this store.
        self.credentials = credentials
        self.subscribers: list[Callable[[Snapshot], None]] = []
        _warn_if_locked(snapshot)

    def swap(self, snapshot: Snapshot) -> Snapshot:
        snapshot.keys.carry_usage(self.current.keys)
        old, self.current = self.current, snapshot
        _warn_if_locked(snapshot)
        for notify in self.subscribers:
            notify(snapshot)
        return old


def _warn_if_locked(snapshot: Snapshot) -> None:
    if snapshot.keys.locked:
        structlog.get_logger().warning(
            "authentication_locked", reason=snapshot.keys.warning, config_version=snapshot.version
        )
