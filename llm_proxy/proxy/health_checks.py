"""Optional active health checks (`health_check: {interval_secs, model}`, global or per
provider). Each check feeds the same circuit breaker as real traffic: without `model` it is a
`GET /models`, with one a one-token chat completion (which costs a token per check)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Final

import orjson
import structlog

from llm_proxy.proxy.breaker import HealthBoard
from llm_proxy.proxy.client import Client, Target, UpstreamError
from llm_proxy.proxy.cloud import CredentialsUnavailable
from llm_proxy.proxy.snapshot import ConfigStore
from llm_proxy.proxy.translation import translate
from llm_proxy.proxy.upstream import ANTHROPIC, Upstream
from llm_proxy.tasks import stop_task

log = structlog.get_logger()

_TICK_SECS: Final = 0.25


async def _cloud_probe(
    upstream: Upstream, model: str | None, timeout_secs: float
) -> tuple[Target | None, bytes, bytes]:
    """A cloud provider's probe: AI Studio's model list without a model; with one, a
    one-token answer in its protocol, with its credential. (Vertex and Bedrock have no
    listing on their inference endpoints: without a model, no probe: None.)"""
    place = upstream.cloud
    assert place is not None
    if model is None:
        listing = place.list_models()
        if listing is None:
            return None, b"", b""
        return listing.target, upstream.fixed_headers, b""
    ping = {"max_tokens": 1, "messages": [{"role": "user", "content": "ping"}]}
    translated = translate("anthropic", upstream, ping, model)
    assert translated is not None
    body, translation = translated
    call = translation.target
    assert call is not None
    credential = b""
    if place.auth is not None:
        credential = place.auth.lines(call, body) or b""
        if not credential:
            await place.auth.ready(timeout_secs)
            credential = place.auth.lines(call, body) or b""
    return (
        call.target,
        b"Content-Type: application/json\r\n" + upstream.fixed_headers + credential,
        body,
    )


class HealthChecker:
    def __init__(self, store: ConfigStore, board: HealthBoard, client: Client):
        self._store = store
        self._board = board
        self._client = client
        self._due: dict[str, float] = {}
        self._running: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._loop_task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._loop_task = asyncio.get_running_loop().create_task(self._run(), name="health-checks")

    async def stop(self) -> None:
        await stop_task(self._loop_task)  # first: it starts the checks
        for task in list(self._tasks):
            await stop_task(task)

    async def _run(self) -> None:
        while True:
            try:
                self._schedule()
            except Exception:  # keep checking the others; a bug here must not stop them all
                log.exception("health_check_scheduling_failed")
            await asyncio.sleep(_TICK_SECS)

    def _schedule(self) -> None:
        snapshot = self._store.current
        now = time.monotonic()
        for provider in snapshot.config.providers:
            check = provider.health_check or snapshot.config.health_check
            name = provider.name
            if check is None or name in self._running:
                continue
            due = self._due.get(name, now)
            if now < due:
                continue
            self._due[name] = now + check.interval_secs
            self._running.add(name)
            task = asyncio.get_running_loop().create_task(
                self._check(snapshot.upstreams[name], check.model, check.interval_secs)
            )
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _check(self, upstream: Upstream, model: str | None, interval: float) -> None:
        name = upstream.name
        timeout = min(10.0, interval, upstream.timeout_secs)
        try:
            result = await probe(self._client, upstream, model, timeout)
        finally:
            self._running.discard(name)
        status = result.status
        if result.error == "no_model":  # Vertex or Bedrock without a `model` to check
            return
        if status is None:
            kind = "timeout" if result.error == "timeout" else "connect_error"
            self._board.failure(name, f"health_check_{kind}")
            log.warning("health_check_failed", provider=name, error=result.error)
        elif status >= 500:
            self._board.failure(name, "health_check_http_5xx", status)
            log.warning("health_check_failed", provider=name, status=status)
        elif status != 429:
            self._board.success(name, status)


@dataclass(frozen=True, slots=True)
class ProbeResult:
    status: int | None  # the upstream's HTTP status; None when it never answered
    latency_secs: float
    error: str | None  # None, "timeout", or the failure's kind (refused, dns, ...)


async def probe(
    client: Client, upstream: Upstream, model: str | None, timeout_secs: float
) -> ProbeResult:
    """One minimal call: `GET /models` without a model, else a one-token chat completion (or
    Anthropic message) of `model` (the upstream's name for it). Used by the active checks
    and the admin API."""
    # (An Anthropic provider's version header: b"" for the others. The one-token body is a
    # valid request of both protocols.)
    fixed = upstream.version_line + upstream.fixed_headers
    if upstream.cloud is not None:
        try:
            target, headers, body = await _cloud_probe(upstream, model, timeout_secs)
        except CredentialsUnavailable:
            return ProbeResult(None, 0.0, "credentials")
        if target is None:
            return ProbeResult(None, 0.0, "no_model")
    elif model is None:
        assert upstream.models_target is not None
        target, headers, body = upstream.models_target, fixed, b""
    else:
        path = "/messages" if upstream.protocol == ANTHROPIC else "/chat/completions"
        target = upstream.target("POST", path, model)
        headers = b"Content-Type: application/json\r\n" + fixed
        body = orjson.dumps(
            {"model": model, "max_tokens": 1, "messages": [{"role": "user", "content": "ping"}]}
        )
    started = time.perf_counter()
    try:
        resp = await client.request(
            target,
            headers,
            body,
            total_secs=timeout_secs,
            connect_secs=min(timeout_secs, upstream.connect_secs),
        )
        try:
            while await resp.read_chunk():
                pass
        finally:
            resp.close()
    except (TimeoutError, UpstreamError) as exc:
        kind = "timeout" if isinstance(exc, TimeoutError) else exc.kind
        return ProbeResult(None, time.perf_counter() - started, kind)
    return ProbeResult(resp.status, time.perf_counter() - started, None)
