"""`create_app()`: the one wiring point (middleware order, routes, resource lifecycles)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Final

from aiohttp import web

from llm_proxy import handlers
from llm_proxy.config import Config
from llm_proxy.config_store import ConfigStore, compile_snapshot
from llm_proxy.health import HealthBoard
from llm_proxy.keys import HEALTH, METRICS, SESSION, STORE
from llm_proxy.metrics import Metrics
from llm_proxy.middlewares.errors import errors
from llm_proxy.middlewares.observe import add_request_id, observe
from llm_proxy.upstream import create_session

# aiohttp's own body cap; the real, reloadable limit (max_request_body_mb) is enforced by the
# handlers, so this only has to be above any sane setting.
_SERVER_BODY_CAP: Final = 1 << 31

PROXY_ROUTES: Final = (
    ("/v1/chat/completions", "/chat/completions"),
    ("/v1/completions", "/completions"),
    ("/v1/embeddings", "/embeddings"),
    ("/v1/responses", "/responses"),
)


def create_app(config: Config, *, version: str = "1") -> web.Application:
    # Middleware order, outermost first:
    #   observe: request id, snapshot, access log, metrics (sees the final status of all)
    #   errors:  renders every proxy-made error in OpenAI's shape
    app = web.Application(middlewares=[observe, errors], client_max_size=_SERVER_BODY_CAP)
    app[STORE] = ConfigStore(compile_snapshot(config, version))
    app[METRICS] = Metrics()
    app[HEALTH] = HealthBoard()
    app.cleanup_ctx.append(_client_session)
    app.on_response_prepare.append(add_request_id)

    for path, endpoint in PROXY_ROUTES:
        app.router.add_post(path, handlers.proxy_handler(endpoint))
    app.router.add_get("/v1/models", handlers.list_models)
    app.router.add_get("/health", handlers.health)
    app.router.add_get("/health/detailed", handlers.health_detailed)
    app.router.add_get("/metrics", handlers.metrics)
    return app


async def _client_session(app: web.Application) -> AsyncIterator[None]:
    async with create_session() as session:
        app[SESSION] = session
        yield
