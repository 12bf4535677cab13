"""`/ui/`: the admin web UI's static files, from the package (no CDN, no Node at run time).

The files are read once, at startup, into memory with their ETag. Every answer carries a
strict Content-Security-Policy (scripts and styles from this origin only, no inline script,
no framing) and `no-store` for the page itself, so a logged-out browser keeps nothing. The UI
holds no secret of its own: it logs in with an admin key kept in the tab's session storage and
sent as a bearer token to the admin API, so there is no cookie for a cross-site request to
ride. It is served only while an admin key is configured (`ADMIN_KEY` or `admin_key(s)`),
checked per request, so a reload that removes the last admin key takes it down too.
"""

from __future__ import annotations

import gzip
import hashlib
import mimetypes
from dataclasses import dataclass
from importlib import resources
from typing import Final

from aiohttp import web
from aiohttp.typedefs import Handler

from llm_proxy.errors import ProxyError
from llm_proxy.keys import STATE

PREFIX: Final = "/ui"
CSP: Final = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; manifest-src 'self'; base-uri 'none'; "
    "form-action 'none'; frame-ancestors 'none'"
)
_TYPES: Final = {
    ".html": "text/html",
    ".js": "text/javascript",
    ".css": "text/css",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".json": "application/json",
}


@dataclass(frozen=True, slots=True)
class Asset:
    body: bytes
    content_type: str
    etag: str
    gzipped: bytes | None  # the body compressed once, at startup (None: not worth it)


def load_assets() -> dict[str, Asset]:
    """Every file under `static/`, by its path below `/ui/` (`index.html` also as ``)."""
    assets: dict[str, Asset] = {}

    def walk(folder: resources.abc.Traversable, prefix: str) -> None:
        for entry in folder.iterdir():
            name = prefix + entry.name
            if entry.is_dir():
                walk(entry, name + "/")
                continue
            suffix = "." + entry.name.rsplit(".", 1)[-1] if "." in entry.name else ""
            content_type = _TYPES.get(suffix) or mimetypes.guess_type(entry.name)[0]
            if content_type is None:
                continue
            body = entry.read_bytes()
            etag = '"' + hashlib.sha256(body).hexdigest()[:20] + '"'
            packed = gzip.compress(body, 9, mtime=0)
            gzipped = packed if content_type != "image/png" and len(packed) < len(body) else None
            assets[name] = Asset(body, content_type, etag, gzipped)

    walk(resources.files("llm_proxy.ui") / "static", "")
    assets[""] = assets["index.html"]
    return assets


def ui_handler(assets: dict[str, Asset]) -> Handler:
    async def serve(request: web.Request) -> web.StreamResponse:
        if not request[STATE].snapshot.config.admin_credentials:
            raise ProxyError(
                404,
                "The admin UI is off: set ADMIN_KEY (or admin_key / admin_keys in the config) "
                "to serve it.",
                code="ui_disabled",
            )
        path = request.match_info.get("path", "")
        asset = assets.get(path)
        if asset is None:
            raise ProxyError(404, f"No such file in the admin UI: /ui/{path}", code="not_found")
        headers = {
            "Vary": "Accept-Encoding",
            "Content-Security-Policy": CSP,
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
            "X-Frame-Options": "DENY",
            "Cross-Origin-Opener-Policy": "same-origin",
            "ETag": asset.etag,
            # The page: always revalidated; assets: revalidated too (small, and an upgrade
            # must never mix old and new modules).
            "Cache-Control": "no-cache",
        }
        if request.headers.get("If-None-Match") == asset.etag:
            return web.Response(status=304, headers=headers)
        charset = "utf-8" if asset.content_type.startswith(("text/", "application/j")) else None
        body = asset.body
        if asset.gzipped is not None and "gzip" in request.headers.get("Accept-Encoding", ""):
            body = asset.gzipped
            headers["Content-Encoding"] = "gzip"
        return web.Response(
            body=body, content_type=asset.content_type, charset=charset, headers=headers
        )

    return serve


async def redirect(request: web.Request) -> web.StreamResponse:
    raise web.HTTPPermanentRedirect(PREFIX + "/")


def add_routes(app: web.Application) -> None:
    handler = ui_handler(load_assets())
    app.router.add_get(PREFIX, redirect)
    app.router.add_get(PREFIX + "/{path:.*}", handler)
