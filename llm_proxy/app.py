"""`create_app()`: the one wiring point (middleware order, routes, resource lifecycles)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path as FsPath
from typing import TYPE_CHECKING, Any, Final

import structlog
from aiohttp import web

from llm_proxy import endpoints
from llm_proxy.admin.http import PREFIX as ADMIN_PREFIX
from llm_proxy.admin.routes import create_admin_app
from llm_proxy.config.master_keys import STRONG_KEY_CHARS, STRONG_KEY_DISTINCT, weak_keys
from llm_proxy.config.model import Config
from llm_proxy.keys import (
    BACKGROUND,
    CACHE,
    CAPTURE,
    CLIENT,
    CONFIG_FILE,
    DSN,
    HEALTH,
    LIFECYCLE,
    LIMITER,
    LISTENER,
    LOG_DSN,
    METRICS,
    NOTIFIER,
    OWNERS,
    SINKS,
    STATS,
    STORE,
    TRACING,
)
from llm_proxy.lifecycle import ConnectionLimits, Lifecycle
from llm_proxy.middlewares.auth import auth
from llm_proxy.middlewares.errors import errors
from llm_proxy.middlewares.observe import observe
from llm_proxy.middlewares.ratelimit import ratelimit
from llm_proxy.observe.langfuse import LangfuseSettings
from llm_proxy.observe.log import dropped_lines
from llm_proxy.observe.metrics import Metrics
from llm_proxy.observe.records import Sink, Sinks
from llm_proxy.observe.request_log import DatabaseLog, JsonlLog
from llm_proxy.observe.stats import Stats
from llm_proxy.observe.tracing.settings import TracingPlan
from llm_proxy.observe.tracing.setup import exporters
from llm_proxy.proxy import generate, handlers, objects
from llm_proxy.proxy.breaker import HealthBoard
from llm_proxy.proxy.cache import ResponseCache
from llm_proxy.proxy.client import Client
from llm_proxy.proxy.cloud import google_infos
from llm_proxy.proxy.credentials import CredentialRegistry
from llm_proxy.proxy.health_checks import HealthChecker
from llm_proxy.proxy.keyring import KeyRing
from llm_proxy.proxy.limiter import Clock, Limiter
from llm_proxy.proxy.messages import count_tokens
from llm_proxy.proxy.owners import Owners
from llm_proxy.proxy.snapshot import ConfigStore, Snapshot, compile_snapshot
from llm_proxy.reload import install_sighup
from llm_proxy.systemd import Notifier
from llm_proxy.tasks import stop_task
from llm_proxy.ui import handler as ui

if TYPE_CHECKING:  # database mode only: asyncpg is imported when it is used
    from llm_proxy.config.database import DbConfig

log = structlog.get_logger()

# aiohttp's own body cap; the real, reloadable limit (max_request_body_mb) is enforced by the
# handlers, so this only has to be above any sane setting.
_SERVER_BODY_CAP: Final = 1 << 31
_BACKGROUND_GRACE_SECS: Final = 5.0
_RESTORE_SECS: Final = 3.0

# JSON calls naming a `model`, routed by it (each also answers without the `/v1` prefix, for
# clients whose base URL lacks it).
PROXY_ENDPOINTS: Final = (
    "/chat/completions",
    "/completions",
    "/embeddings",
    "/responses",
    "/images/generations",
    "/audio/speech",
    "/moderations",
    "/rerank",
    "/messages",  # Anthropic's Messages API (answers and errors in its shape)
)
# multipart/form-data uploads routed by their `model` field (spooled, sent byte for byte).
UPLOAD_ENDPOINTS: Final = (
    "/audio/transcriptions",
    "/audio/translations",
    "/images/edits",
    "/images/variations",
)
AZURE_ENDPOINTS: Final = (
    "/chat/completions",
    "/completions",
    "/embeddings",
    "/images/generations",
    "/audio/speech",
    "/audio/transcriptions",
    "/audio/translations",
)
# Objects living at one provider (`llm_proxy.proxy.objects`): every method, by id.
OBJECT_COLLECTIONS: Final = ("files", "batches", "vector_stores", "conversations", "uploads")
_PREFIXES: Final = ("/v1", "")


@dataclass(frozen=True, slots=True)
class DatabaseMode:
    """Serve providers and keys from PostgreSQL, reloading on NOTIFY."""

    dsn: str
    base: Config  # settings from the file/environment; providers and keys come from the rows
    check_interval_secs: float = 30.0


def create_app(
    config: Config,
    *,
    version: str = "1",
    clock: Clock | None = None,
    breaker_clock: Clock = time.monotonic,
    database: DatabaseMode | None = None,
    langfuse: LangfuseSettings | None = None,
    tracing: TracingPlan | None = None,
    config_file: FsPath | None = None,
    handle_sighup: bool = False,
) -> web.Application:
    """The proxy application. `clock` (seconds) drives the rate limiter and `breaker_clock`
    (monotonic seconds) the circuit breaker; tests pass their own.
    With `database`, `config` is the snapshot loaded at startup and a listener keeps it current.
    `config_file` (YAML mode) is what SIGHUP and the admin API's reload re-read;
    `handle_sighup` is for the serving process (tests run many apps in one and leave it off).
    """
    # Middleware order, outermost first:
    #   observe:   request id, snapshot, access log, metrics (sees the final status of all)
    #   errors:    renders every proxy-made error in OpenAI's shape
    #   auth:      master key -> RequestState.api_key (401 otherwise)
    #   ratelimit: the key's request and token limits (429), x-ratelimit-* headers
    app = web.Application(
        middlewares=[observe, errors, auth, ratelimit], client_max_size=_SERVER_BODY_CAP
    )
    dsn = database.dsn if database is not None else None
    _serving_state(app, config, version, dsn, breaker_clock)
    _record_sinks_state(app, config, dsn, langfuse, tracing)
    if dsn is not None:
        app[DSN] = dsn
    if config_file is not None:
        app[CONFIG_FILE] = config_file
    _cleanup_contexts(app, clock, database)
    app.on_startup.append(_warn_if_open)
    app.add_routes(_routes())
    app.add_subapp(ADMIN_PREFIX, create_admin_app())
    ui.add_routes(app)
    if handle_sighup:
        app.on_startup.append(install_sighup)  # after the cleanup contexts: the listener is set
    return app


def _serving_state(
    app: web.Application, config: Config, version: str, dsn: str | None, breaker_clock: Clock
) -> None:
    """The config snapshot, the metrics (with what they read at scrape time), the breakers and
    the other per-process state the handlers share."""
    credentials = CredentialRegistry()
    store = app[STORE] = ConfigStore(compile_snapshot(config, version, credentials), credentials)
    metrics = app[METRICS] = Metrics()
    health = app[HEALTH] = HealthBoard(breaker_clock)
    health.breaker = config.circuit_breaker
    metrics.provider_health = lambda: {
        p.name: health.get(p.name).healthy for p in store.current.config.providers
    }
    metrics.config_version = lambda: store.current.version
    metrics.log_dropped = dropped_lines
    app[BACKGROUND] = set()
    lifecycle = app[LIFECYCLE] = Lifecycle(ConnectionLimits.of(config))
    metrics.active_requests = lambda: lifecycle.in_flight
    app[NOTIFIER] = Notifier()
    app[STATS] = Stats(metrics)
    app[OWNERS] = Owners(dsn)
    cache = app[CACHE] = ResponseCache(metrics)
    cache.configure(config.cache, config.rate_limit_backend)
    store.subscribers.append(
        lambda snapshot: cache.configure(snapshot.config.cache, snapshot.config.rate_limit_backend)
    )


def _record_sinks_state(
    app: web.Application,
    config: Config,
    dsn: str | None,
    langfuse: LangfuseSettings | None,
    tracing: TracingPlan | None,
) -> None:
    """Where request records go (the request log, span exporters, Langfuse), how much
    content they keep, and whether each request starts a trace."""
    sinks = app[SINKS] = Sinks(record_sinks(config, dsn))
    for sink in sinks.sinks:
        if isinstance(sink, DatabaseLog):
            app[LOG_DSN] = sink.dsn  # the admin API's /logs and /usage read it
    traced = exporters(tracing, langfuse)
    sinks.sinks.extend(traced.sinks)
    app[TRACING] = traced.sampler
    capture = config.request_log.capture_content or (langfuse and langfuse.capture_content)
    app[CAPTURE] = max(config.request_log.max_content_bytes if capture else 0, traced.capture_bytes)
    metrics = app[METRICS]
    metrics.record_sinks = lambda: [
        (sink.name, sink.written, sink.dropped, sink.queued) for sink in sinks.sinks
    ]
    metrics.trace_exporters = lambda: [
        (e.name, e.spans_sent, e.spans_dropped, e.failed_batches) for e in traced.otlp
    ]


def _cleanup_contexts(
    app: web.Application, clock: Clock | None, database: DatabaseMode | None
) -> None:
    """Started in this order, closed in the reverse one."""
    app.cleanup_ctx.append(_upstream_client)
    app.cleanup_ctx.append(_credentials)
    app.cleanup_ctx.append(_owners)
    app.cleanup_ctx.append(_stats)
    app.cleanup_ctx.append(_limiter(clock))
    app.cleanup_ctx.append(_response_cache)
    # Before the background tasks: closed after them, so late token counts are written.
    app.cleanup_ctx.append(_record_sinks)
    app.cleanup_ctx.append(_background_tasks)
    app.cleanup_ctx.append(_health_checks)
    if database is not None:
        app.cleanup_ctx.append(_listener(database))
        app.cleanup_ctx.append(_key_usage(database))


def _routes() -> list[web.AbstractRouteDef]:
    """The proxy's own routes, in matching order (the admin API and the UI add theirs). Each
    OpenAI path also answers without the `/v1` prefix, for clients whose base URL lacks it."""
    table: list[web.AbstractRouteDef] = []
    for endpoint in PROXY_ENDPOINTS:
        handler = handlers.proxy_handler(endpoint)
        table += [web.post(prefix + endpoint, handler) for prefix in _PREFIXES]
    # Azure OpenAI clients: /openai/deployments/{deployment}/chat/completions?api-version=...
    for endpoint in AZURE_ENDPOINTS:
        make = handlers.upload_handler if endpoint in UPLOAD_ENDPOINTS else handlers.proxy_handler
        table.append(web.post(f"/openai/deployments/{{deployment}}{endpoint}", make(endpoint)))
    for endpoint in UPLOAD_ENDPOINTS:
        handler = handlers.upload_handler(endpoint)
        table += [web.post(prefix + endpoint, handler) for prefix in _PREFIXES]
    table += [web.post(prefix + "/messages/count_tokens", count_tokens) for prefix in _PREFIXES]
    for prefix in _PREFIXES:
        for collection in OBJECT_COLLECTIONS:
            handler = objects.object_handler(collection)
            for tail in ("", "/{id}", "/{id}/{tail:.+}"):
                table.append(web.route("*", f"{prefix}/{collection}{tail}", handler))
        stored = objects.object_handler("responses")  # a response, once created
        for tail in ("/{id}", "/{id}/{tail:.+}"):
            table.append(web.route("*", f"{prefix}/responses{tail}", stored))
    # Gemini's API (the google-genai SDK): its `:method` paths cannot clash with OpenAI's;
    # `GET /v1/models` answers in the caller's format (`generate.any_list_models`).
    for prefix in ("/v1beta", "/v1"):
        table.append(web.post(f"{prefix}/models/{{spec}}", generate.generate))
    table.append(web.get("/v1beta/models", generate.list_models))
    table.append(web.get("/v1beta/models/{model}", generate.get_model))
    table.append(web.get("/v1/models", generate.any_list_models))
    table.append(web.get("/v1/models/{model:.+}", generate.any_get_model))
    table.append(web.get("/models", handlers.list_models))
    table.append(web.get("/models/{model:.+}", handlers.retrieve_model))
    table.append(web.get("/health", endpoints.health))
    table.append(web.get("/health/detailed", endpoints.health_detailed))
    table.append(web.get("/metrics", endpoints.metrics))
    return table


async def _upstream_client(app: web.Application) -> AsyncIterator[None]:
    config = app[STORE].current.config  # connection settings are read once, at startup
    client = app[CLIENT] = Client(
        dns_ttl_secs=config.dns_ttl_secs,
        max_per_origin=config.max_connections_per_provider,
        pool_timeout_secs=config.pool_timeout_secs,
    )
    try:
        yield
    finally:
        await client.close()


async def _credentials(app: web.Application) -> AsyncIterator[None]:
    """Vertex AI's token sources refresh in the background while the app runs."""
    store = app[STORE]
    credentials = store.credentials
    assert credentials is not None
    retired: set[asyncio.Task[None]] = set()

    def on_swap(snapshot: Snapshot) -> None:
        # A reload that dropped a Vertex credential (or rotated its key) stops its refresh.
        task = asyncio.get_running_loop().create_task(
            credentials.retain(google_infos(snapshot.upstreams.values()))
        )
        retired.add(task)
        task.add_done_callback(retired.discard)

    store.subscribers.append(on_swap)
    try:
        yield
    finally:
        store.subscribers.remove(on_swap)
        for task in list(retired):
            await stop_task(task)
        await credentials.close()


async def _restore_budgets(limiter: Limiter, dsn: str, keys: KeyRing) -> None:
    """Budgets counted here alone (no Redis) start from what the request log says each key
    and each team spent this period; at most `_RESTORE_SECS` of startup, and never a reason
    not to start."""
    from llm_proxy.proxy.budgets import restore_from_log

    teams = {team.name: team.display for team in keys.teams.values()}
    try:
        async with asyncio.timeout(_RESTORE_SECS):
            restored = await restore_from_log(limiter.budgets, dsn, time.time(), teams)
    except Exception as exc:  # the database is down or slow: budgets start at zero, as before
        log.warning("budget_restore_failed", error=type(exc).__name__)
    else:
        if restored:
            log.info("budgets_restored", keys=restored)


def _limiter(clock: Clock | None) -> Any:
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        store = app[STORE]
        url = store.current.config.rate_limit_backend
        redis = None
        if url is not None:
            from redis.asyncio import Redis

            # Short timeouts: a slow Redis must not slow requests; the limiter fails open.
            redis = Redis.from_url(url, socket_timeout=0.25, socket_connect_timeout=0.25)
        kwargs: dict[str, Any] = {"redis": redis, "metrics": app[METRICS]}
        if clock is not None:
            kwargs["clock"] = clock
        limiter = app[LIMITER] = Limiter(**kwargs)
        limiter.sync(store.current.keys.subjects())
        if redis is None and LOG_DSN in app:
            await _restore_budgets(limiter, app[LOG_DSN], store.current.keys)

        def on_swap(snapshot: Snapshot) -> None:
            limiter.sync(snapshot.keys.subjects())
            app[HEALTH].breaker = snapshot.config.circuit_breaker
            _warn_if_no_keys(snapshot)

        store.subscribers.append(on_swap)
        try:
            yield
        finally:
            store.subscribers.remove(on_swap)
            if redis is not None:
                # Budget charges still on their way to Redis (a few ms' worth).
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(1):
                        await limiter.flush()
                await redis.aclose()

    return ctx


def _listener(database: DatabaseMode) -> Any:
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        from llm_proxy.config.listener import ConfigListener  # asyncpg: database mode only

        store, metrics = app[STORE], app[METRICS]

        def on_config(config: Config, fetched: DbConfig) -> None:
            store.swap(compile_snapshot(config, fetched.version, store.credentials))

        listener = app[LISTENER] = ConfigListener(
            database.dsn,
            database.base,
            serving_version=lambda: store.current.version,
            on_config=on_config,
            on_result=metrics.config_reload,
            check_interval_secs=database.check_interval_secs,
        )
        listener.start()
        try:
            yield
        finally:
            await listener.stop()

    return ctx


def _key_usage(database: DatabaseMode) -> Any:
    """Database mode: each key's last use written to `key_last_used` about once a minute,
    and at shutdown."""

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        from llm_proxy.config.key_usage import KeyUsageWriter  # asyncpg: database mode only

        store = app[STORE]
        writer = KeyUsageWriter(database.dsn, lambda: store.current.keys.used)
        task = asyncio.get_running_loop().create_task(writer.run(), name="key-usage")
        try:
            yield
        finally:
            await stop_task(task)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(6):
                    await writer.flush()

    return ctx


def record_sinks(config: Config, database_dsn: str | None) -> list[Sink]:
    """The request log's destinations: PostgreSQL (database mode's own database unless
    `request_log.database_url` names another) and a JSON-lines file."""
    settings = config.request_log
    if settings.enabled is False:
        return []
    out: list[Sink] = []
    dsn = settings.database_url or database_dsn
    if dsn is not None:
        out.append(DatabaseLog(dsn, settings))
    if settings.jsonl_path is not None:
        out.append(JsonlLog(settings.jsonl_path, settings))
    if settings.enabled and not out:
        log.warning(
            "request_log_without_destination",
            fix="set request_log.database_url or request_log.jsonl_path",
        )
    return out


async def _stats(app: web.Application) -> AsyncIterator[None]:
    stats = app[STATS]
    stats.start()
    try:
        yield
    finally:
        await stats.close()


async def _owners(app: web.Application) -> AsyncIterator[None]:
    owners = app[OWNERS]
    owners.start()
    try:
        yield
    finally:
        await owners.close()


async def _response_cache(app: web.Application) -> AsyncIterator[None]:
    try:
        yield
    finally:
        await app[CACHE].close()  # (its last writes to Redis, then its connections)


async def _record_sinks(app: web.Application) -> AsyncIterator[None]:
    sinks = app[SINKS]
    await sinks.start()
    try:
        yield
    finally:
        await sinks.close()


async def _health_checks(app: web.Application) -> AsyncIterator[None]:
    checker = HealthChecker(app[STORE], app[HEALTH], app[CLIENT])
    checker.start()
    try:
        yield
    finally:
        await checker.stop()


async def _background_tasks(app: web.Application) -> AsyncIterator[None]:
    yield
    pending = app[BACKGROUND]
    if pending:
        _, late = await asyncio.wait(set(pending), timeout=_BACKGROUND_GRACE_SECS)
        for task in late:
            task.cancel()


async def _warn_if_open(app: web.Application) -> None:
    _warn_if_no_keys(app[STORE].current)
    weak = weak_keys(app[STORE].current.config)
    if weak:
        # By name only: the keys themselves are never logged.
        log.warning(
            "weak_keys",
            keys=weak,
            reason=f"shorter than {STRONG_KEY_CHARS} characters or made of fewer than "
            f"{STRONG_KEY_DISTINCT} different characters: easy to guess",
            fix="replace them with random keys, e.g. `openssl rand -base64 32`",
        )


def _warn_if_no_keys(snapshot: Snapshot) -> None:
    if not snapshot.keys.enabled:
        log.warning("authentication_disabled", reason=snapshot.keys.warning)
