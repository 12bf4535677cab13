"""The admin API (`/admin/v1/...`) as one sub-application: its guard, its pool and every route.
JSON in and out; every error OpenAI-shaped. The handlers live in the modules named below."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from llm_proxy.admin import (
    cache,
    config_routes,
    logs,
    openapi,
    original_logs,
    probes,
    resources,
    routing,
    teams,
)
from llm_proxy.admin.guard import guard, validate
from llm_proxy.admin.pool import AdminPool
from llm_proxy.admin.stats import stats
from llm_proxy.keys import ADMIN_DB


def create_admin_app() -> web.Application:
    """The admin sub-application, mounted at PREFIX by `create_app`."""
    app = web.Application(middlewares=[guard])
    app[ADMIN_DB] = AdminPool()
    app.cleanup_ctx.append(_database)
    app.router.add_post("/auth/validate", validate)
    config_routes.add_routes(app)
    app.router.add_get("/stats", stats)
    resources.add_routes(app)
    teams.add_routes(app)
    routing.add_routes(app)
    cache.add_routes(app)
    logs.add_routes(app)
    original_logs.add_routes(app)  # the original llm-proxy's log paths
    probes.add_routes(app)
    app.router.add_get("/openapi.json", openapi.openapi_json)
    return app


async def _database(app: web.Application) -> AsyncIterator[None]:
    yield
    await app[ADMIN_DB].close()
