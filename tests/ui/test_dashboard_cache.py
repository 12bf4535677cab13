"""The dashboard's Cache section and the Logs page's cache filter (`js/pages/dashboard.js`,
`js/pages/logs.js`) in a real browser, against the proxy app in this process with a real
response cache (memory) answering a mock upstream, and its request log in PostgreSQL: what the
section shows, the purge behind its confirmation, a refresh that keeps the focus, and the
section of a proxy with the cache off."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp

from llm_proxy.app import create_app
from llm_proxy.config.yaml_file import load_config_file
from tests.helpers import Upstream, serve
from tests.ui.test_ui import (
    ADMIN_KEY,
    Watch,
    assert_contrast,
    assert_fits,
    assert_labelled,
    checkpoint,
    evidence,
    log_in,
    needs_browser,
    open_page,
)

KEY = "sk-team-ui-0123456789"
CONFIG = """\
admin_key: {admin}
providers:
  - name: up
    api_base: {upstream}
    api_key: sk-upstream
    model_mapping: {{m1: null, m2: null}}
master_keys:
  - {{name: team-ui, key: {key}}}
request_log: {{database_url: "{dsn}", flush_interval_secs: 0.05}}
"""
CACHE = "cache: {backend: memory, max_bytes: 64MB}\n"
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}


@asynccontextmanager
async def proxy(tmp_path: Path, text: str) -> AsyncIterator[str]:
    path = tmp_path / "proxy.yaml"
    path.write_text(text)
    async with serve(create_app(load_config_file(path), config_file=path)) as url:
        yield url


async def ask(http: aiohttp.ClientSession, url: str, model: str) -> str:
    async with http.post(
        url + "/v1/chat/completions",
        json={"model": model, "messages": [{"role": "user", "content": "hi"}], "temperature": 0},
        headers={"Authorization": f"Bearer {KEY}"},
    ) as resp:
        assert resp.status == 200
        await resp.read()
        return resp.headers.get("x-llm-proxy-cache", "")


async def entries(http: aiohttp.ClientSession, url: str) -> int:
    async with http.get(url + "/admin/v1/cache", headers=ADMIN) as resp:
        return int((await resp.json())["entries"])


@needs_browser
async def test_the_dashboards_cache_section_shows_the_cache_and_purges_it(
    browser: Any, upstream: Upstream, config_dsn: str, tmp_path: Path
) -> None:
    config = CONFIG.format(admin=ADMIN_KEY, upstream=upstream.api_base, key=KEY, dsn=config_dsn)
    page = await browser.new_page(viewport={"width": 1280, "height": 900})
    watch = Watch(page)
    async with (
        proxy(tmp_path, config + CACHE) as url,
        aiohttp.ClientSession() as http,
        evidence(page, tmp_path),
    ):
        assert [await ask(http, url, m) for m in ("m1", "m1", "m2")] == ["miss", "hit", "miss"]
        await log_in(page, url)
        section = page.get_by_role("region", name="Cache")
        await section.locator("#tile-cache-entries .tile-value", has_text="2").wait_for()
        tiles = {
            name: await section.locator(f"#tile-cache{name} .tile-value").inner_text()
            for name in ("", "-entries", "-bytes", "-ratio", "-counts")
        }
        assert tiles[""] == "on · memory"
        assert re.fullmatch(r"[\d.]+ (B|KB) of 64 MB", tiles["-bytes"]), tiles
        assert tiles["-ratio"] == "33.3%"  # 1 hit of 3 looked up
        assert tiles["-counts"] == "1 · 2 · 0"
        await checkpoint(page, "dashboard-cache")

        # A refresh (every 5 s) redraws the tiles, and keeps the focus on the button.
        purge = section.get_by_role("button", name="Purge cache")
        await purge.focus()
        assert await ask(http, url, "m2") == "hit"
        await section.locator("#tile-cache-counts .tile-value", has_text="2 · 2 · 0").wait_for(
            timeout=8000
        )
        assert await purge.evaluate("(el) => document.activeElement === el")

        # Cancel purges nothing; confirmed, every entry goes and the section says so.
        await purge.click()
        dialog = page.get_by_role("dialog", name="Purge the response cache?")
        await dialog.get_by_role("button", name="Cancel").click()
        await dialog.wait_for(state="detached")
        assert await entries(http, url) == 2
        await purge.press("Enter")  # the keyboard alone purges too
        await dialog.get_by_role("button", name="Purge").click()
        await section.get_by_text("Purged 2 entries.").wait_for()
        await section.locator("#tile-cache-entries .tile-value", has_text="0").wait_for()
        assert await entries(http, url) == 0
        assert await ask(http, url, "m1") == "miss"
        await assert_labelled(page)

        # The Logs page: the cache's word as a filter, and in a request's detail.
        await open_page(page, "Logs")
        await page.get_by_label("Cache").select_option("hit")
        rows = page.locator("tr[data-request-id]")
        for _ in range(50):  # the log is written off the request path: poll briefly
            await page.get_by_role("button", name="Filter").click()
            await page.wait_for_timeout(100)
            if await rows.count() == 2:
                break
        assert await rows.count() == 2
        assert "cache=hit" in page.url
        for text in await rows.all_inner_texts():
            assert "cache" in text.split("\t")  # the provider of a hit
        await rows.first.get_by_role("link").click()
        detail = page.get_by_role("region", name=re.compile("^Request "))
        await detail.wait_for()
        assert await detail.locator("dt[data-field='cache'] + dd").inner_text() == "hit"
        assert await detail.locator("dt[data-field='cache']").inner_text() == "Cache"

        await open_page(page, "Dashboard")
        await page.set_viewport_size({"width": 390, "height": 844})
        await section.locator("#tile-cache .tile-value").wait_for()
        await assert_fits(page)
        await page.emulate_media(color_scheme="dark")
        await assert_contrast(page)
        await page.emulate_media(color_scheme="light")

    async with proxy(tmp_path, config) as url:
        await page.set_viewport_size({"width": 1280, "height": 900})
        await log_in(page, url)
        section = page.get_by_role("region", name="Cache")
        await section.get_by_text(re.compile("^The response cache is off")).wait_for()
        assert await section.get_by_role("button", name="Purge cache").count() == 0
        await assert_contrast(page)
    watch.check()
