"""Health probes on demand: `POST /providers/{id}/health` (and the original llm-proxy's
`GET /health/providers/{id}`) and `POST /health/check` call each model with a minimal request
(one token) and answer per model with the status and the latency. A probe never feeds the
circuit breaker: an operator's test must not eject a provider."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any, Final

from aiohttp import web

from llm_proxy.admin.http import MAX_ID, Conn, body_of, int_param, json_response
from llm_proxy.config.model import Provider
from llm_proxy.errors import ProxyError, bad_param
from llm_proxy.keys import CLIENT, DSN, STATE
from llm_proxy.proxy.health_checks import probe
from llm_proxy.proxy.snapshot import Snapshot

_MAX_CONCURRENT: Final = 32
_MAX_TIMEOUT_SECS: Final = 120.0


def _options(data: dict[str, Any]) -> tuple[list[str] | None, int, float]:
    unknown = set(data) - {"models", "max_concurrent", "timeout_secs", "providers", "provider_ids"}
    if unknown:
        raise bad_param(sorted(unknown)[0], f"Unknown field `{sorted(unknown)[0]}`.")
    models = data.get("models")
    if models is not None and (
        not isinstance(models, list) or not all(isinstance(m, str) and m for m in models)
    ):
        raise bad_param("models", "`models` must be a list of model names.")
    limit = data.get("max_concurrent", 4)
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= _MAX_CONCURRENT:
        raise bad_param("max_concurrent", f"`max_concurrent` must be 1-{_MAX_CONCURRENT}.")
    timeout = data.get("timeout_secs", 10)
    if (
        isinstance(timeout, bool)
        or not isinstance(timeout, int | float)
        or not 0 < timeout <= _MAX_TIMEOUT_SECS
    ):
        raise bad_param("timeout_secs", "`timeout_secs` must be above 0 and at most 120.")
    return models, limit, float(timeout)


def _upstream_model(provider: Provider, requested: str) -> str | None:
    """What `provider` calls `requested` (None: it does not serve that name)."""
    for rule in provider.model_mapping:
        if rule.pattern is None and rule.key == requested:
            return rule.target or requested
    for rule in provider.model_mapping:
        if rule.pattern is not None and rule.pattern.fullmatch(requested):
            return rule.target or requested
    return None


async def _probe_provider(
    request: web.Request,
    snapshot: Snapshot,
    provider: Provider,
    models: list[str] | None,
    gate: asyncio.Semaphore,
    probe_secs: float,
) -> dict[str, Any]:
    upstream = snapshot.upstreams[provider.name]
    client = request.config_dict[CLIENT]
    names = (
        models
        if models is not None
        else [rule.key for rule in provider.model_mapping if rule.pattern is None]
    )

    async def one(model: str) -> dict[str, Any]:
        target = _upstream_model(provider, model)
        if target is None:
            return {
                "model": model,
                "upstream_model": None,
                "ok": False,
                "status": None,
                "latency_ms": None,
                "error": "not_served",
            }
        async with gate:
            result = await probe(client, upstream, target, probe_secs)
        ok = result.status is not None and 200 <= result.status < 300
        return {
            "model": model,
            "upstream_model": target,
            "ok": ok,
            "status": result.status,
            "latency_ms": round(result.latency_secs * 1000, 1),
            "error": result.error or (None if ok else f"http_{result.status}"),
        }

    results = list(await asyncio.gather(*(one(m) for m in names)))
    return {
        "provider": provider.name,
        "healthy": bool(results) and all(r["ok"] for r in results),
        "results": results,
    }


async def _provider_by_id(request: web.Request, snapshot: Snapshot, row_id: int) -> Provider:
    if DSN in request.config_dict:
        async with Conn(request, "Probing") as conn:
            row = await conn.fetchrow(
                "SELECT name, is_enabled FROM providers WHERE id = $1", row_id
            )
        if row is None:
            raise ProxyError(404, f"No provider with id {row_id}.", code="not_found")
        name = row["name"]
    else:
        providers = snapshot.config.providers
        if not 1 <= row_id <= len(providers):
            raise ProxyError(404, f"No provider with id {row_id}.", code="not_found")
        name = providers[row_id - 1].name
    for provider in snapshot.config.providers:
        if provider.name == name:
            return provider
    raise ProxyError(
        409,
        f"Provider {name!r} is not being served (disabled, or not loaded yet): enable it "
        "to probe it.",
        code="provider_disabled",
    )


async def _names_by_id(request: web.Request, snapshot: Snapshot, ids: Any) -> list[str]:
    """The names of the providers `ids` (the original llm-proxy's `provider_ids`: row ids in
    database mode, positions in the file in YAML mode, as `GET /providers` shows them)."""
    if not isinstance(ids, list) or not all(
        isinstance(i, int) and not isinstance(i, bool) and 1 <= i <= MAX_ID for i in ids
    ):
        raise bad_param("provider_ids", "`provider_ids` must be a list of provider ids.")
    if DSN in request.config_dict:
        async with Conn(request, "Probing") as conn:
            rows = await conn.fetch("SELECT id, name FROM providers WHERE id = ANY($1)", ids)
        names = {row["id"]: row["name"] for row in rows}
    else:
        names = {i + 1: p.name for i, p in enumerate(snapshot.config.providers)}
    missing = [str(i) for i in ids if i not in names]
    if missing:
        raise bad_param("provider_ids", f"No provider with id {', '.join(missing)}.")
    return [names[i] for i in ids]


def _as_original(provider_id: int, answer: dict[str, Any]) -> dict[str, Any]:
    """A provider's probe answer with the fields the original llm-proxy's clients read
    (`ProviderHealthStatus`: provider_id, provider_key, status, models,
    avg_response_time_ms, checked_at) beside ours."""
    results = answer["results"]
    times = [r["latency_ms"] for r in results if r["ok"]]
    return {
        **answer,
        "provider_id": provider_id,
        "provider_key": answer["provider"],
        "status": "healthy" if answer["healthy"] else "unhealthy",
        "models": [
            {
                "model": r["model"],
                "status": "healthy" if r["ok"] else "unhealthy",
                "response_time_ms": round(r["latency_ms"]) if r["latency_ms"] is not None else None,
                "error": r["error"],
            }
            for r in results
        ],
        "avg_response_time_ms": round(sum(times) / len(times)) if times else None,
        "checked_at": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
    }


async def probe_provider(request: web.Request) -> web.Response:
    """`POST /providers/{id}/health {models?, max_concurrent?, timeout_secs?}`: every model
    named (default: the provider's exact model names), at most max_concurrent at a time."""
    row_id = int_param(request.match_info["id"], "id", 1)
    assert row_id is not None
    models, limit, timeout = _options(await body_of(request))
    snapshot = request[STATE].snapshot
    provider = await _provider_by_id(request, snapshot, row_id)
    if models is None and not any(r.pattern is None for r in provider.model_mapping):
        raise bad_param("models", "This provider has only patterns: name the models to probe.")
    gate = asyncio.Semaphore(limit)
    return json_response(await _probe_provider(request, snapshot, provider, models, gate, timeout))


async def check_all(request: web.Request) -> web.Response:
    """`POST /health/check {providers?, models?, max_concurrent?, timeout_secs?}`: the same
    for every provider served (or those named), max_concurrent calls at a time in all."""
    data = await body_of(request)
    models, limit, timeout = _options(data)
    snapshot = request[STATE].snapshot
    chosen = data.get("providers")
    if "provider_ids" in data:  # the original llm-proxy's way to name them
        named = await _names_by_id(request, snapshot, data["provider_ids"])
        if chosen is not None and chosen != named:
            raise bad_param(
                "provider_ids",
                "`provider_ids` (the original llm-proxy's way to name the providers) and "
                "`providers` are both given, naming different providers: give one of them.",
            )
        chosen = named
    providers = list(snapshot.config.providers)
    if chosen is not None:
        if not isinstance(chosen, list) or not all(isinstance(n, str) for n in chosen):
            raise bad_param("providers", "`providers` must be a list of provider names.")
        known = {p.name for p in providers}
        missing = [n for n in chosen if n not in known]
        if missing:
            raise bad_param("providers", f"Not served by this proxy: {', '.join(missing)}.")
        providers = [p for p in providers if p.name in chosen]
    gate = asyncio.Semaphore(limit)
    answers = await asyncio.gather(
        *(
            _probe_provider(request, snapshot, p, models, gate, timeout)
            for p in providers
            if models is not None or any(r.pattern is None for r in p.model_mapping)
        )
    )
    return json_response(
        {"healthy": all(a["healthy"] for a in answers), "providers": list(answers)}
    )


async def provider_health(request: web.Request) -> web.Response:
    """`GET /health/providers/{id}?models=a,b&timeout_secs=`: the original llm-proxy's path
    for probing one provider (a compatibility alias of `POST /providers/{id}/health`),
    answered with its fields and ours."""
    row_id = int_param(request.match_info["id"], "id", 1)
    assert row_id is not None
    query = request.query
    options: dict[str, Any] = {}
    if query.get("models"):
        options["models"] = [m.strip() for m in query["models"].split(",") if m.strip()]
    if query.get("timeout_secs"):
        try:
            options["timeout_secs"] = float(query["timeout_secs"])
        except ValueError:
            raise bad_param("timeout_secs", "`timeout_secs` must be a number.") from None
    models, limit, timeout = _options(options)
    snapshot = request[STATE].snapshot
    provider = await _provider_by_id(request, snapshot, row_id)
    if models is None and not any(r.pattern is None for r in provider.model_mapping):
        raise bad_param("models", "This provider has only patterns: name the models to probe.")
    gate = asyncio.Semaphore(limit)
    answer = await _probe_provider(request, snapshot, provider, models, gate, timeout)
    return json_response(_as_original(row_id, answer))


def add_routes(app: web.Application) -> None:
    app.router.add_post("/providers/{id}/health", probe_provider)
    app.router.add_post("/health/check", check_all)
    app.router.add_get("/health/providers/{id}", provider_health)  # the original's path
