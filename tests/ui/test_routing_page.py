"""The Routing page (`js/pages/routing.js`) in a real browser, against the proxy app in this
process: YAML mode (read-only), and database mode on a real PostgreSQL, where the page's
editor saves through the real `PUT /admin/v1/routing` into the routing tables. What is tested:
what the page shows, what it sends, and that a refused edit changes nothing.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import asyncpg

from llm_proxy.app import DatabaseMode, create_app
from llm_proxy.config.database import initial_load
from llm_proxy.config.routing import routing_data
from llm_proxy.config.yaml_file import load_config_file
from llm_proxy.keys import STORE
from tests.helpers import serve
from tests.helpers.db import add_provider
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

UPSTREAM = "http://127.0.0.1:9/v1"  # never called: the page only reads the config
ROUTING = """\
routing:
  fallbacks: {gpt-4o: [gpt-4o-mini, claude-sonnet]}
  context_window_fallbacks: {gpt-4o-mini: [gpt-4.1]}
  content_policy_fallbacks: {gpt-4o: [claude-sonnet]}
  retry: {attempts: 3, on: [connect, timeout, "429", 5xx], backoff_ms: 100, max_backoff_ms: 2000}
  deadline_secs: 60
  strategy: {default: weighted, gpt-4o-mini: cost}
  models:
    gpt-4o: {strategy: latency, retry: {attempts: 5}, deadline_secs: 30, context_window: 128000}
  rules:
    - name: eu
      match: {key: [eu-*], header: {x-region: eu}}
      providers: [azure-eu]
    - name: batch
      match: {tags: [batch, nightly], model: [gpt-*]}
      model: gpt-4o-mini
"""
PROVIDERS = {
    "openai": {"gpt-4o": None, "gpt-4o-mini": None, "gpt-4.1": None},
    "anthropic": {"claude-sonnet": None},
    "azure-eu": {"gpt-4o": None, "gpt-4o-mini": None},
}
YAML = f"admin_key: {ADMIN_KEY}\nproviders:\n" + "".join(
    f"  - name: {name}\n    api_base: {UPSTREAM}\n    model_mapping: {json.dumps(mapping)}\n"
    for name, mapping in PROVIDERS.items()
)


@asynccontextmanager
async def yaml_proxy(tmp_path: Path, text: str) -> AsyncIterator[str]:
    path = tmp_path / "proxy.yaml"
    path.write_text(text)
    app = create_app(load_config_file(path), config_file=path)
    async with serve(app) as url:
        yield url


async def chain(page: Any, reason: str, model: str) -> list[str]:
    item = page.locator(f"[data-reason='{reason}'] li[data-chain='{model}'] .model")
    return list(await item.all_inner_texts())


@needs_browser
async def test_routing_page_in_yaml_mode(browser: Any, tmp_path: Path) -> None:
    """Chains as arrows, the defaults, the per-model table and the rules in order, read-only;
    on a phone and in both themes. Without a section: what routing does, and an example."""
    page = await browser.new_page(viewport={"width": 1280, "height": 900})
    watch = Watch(page)
    async with yaml_proxy(tmp_path, YAML + ROUTING) as url, evidence(page, tmp_path):
        await log_in(page, url)
        await open_page(page, "Routing")
        await page.get_by_text("Read-only.").wait_for()
        await page.get_by_text(re.compile("routing: section of the config file")).wait_for()
        assert await page.get_by_role("button", name="Edit routing").count() == 0
        assert await page.locator("textarea").count() == 0

        await page.get_by_role("heading", name="Fallback chains").wait_for()
        assert await chain(page, "fallbacks", "gpt-4o") == [
            "gpt-4o",
            "gpt-4o-mini",
            "claude-sonnet",
        ]
        assert await chain(page, "context_window_fallbacks", "gpt-4o-mini") == [
            "gpt-4o-mini",
            "gpt-4.1",
        ]
        assert await chain(page, "content_policy_fallbacks", "gpt-4o") == [
            "gpt-4o",
            "claude-sonnet",
        ]
        arrows = page.locator("[data-reason='fallbacks'] li[data-chain='gpt-4o'] .arrow")
        assert await arrows.all_inner_texts() == ["→", "→"]

        setting = page.locator("dl.detail dd")
        assert (
            await setting.and_(page.locator("[data-setting='Strategy']")).inner_text()
        ).startswith("weighted")
        assert await page.locator("dd[data-setting='Attempts']").inner_text() == "3"
        assert (
            await page.locator("dd[data-setting='Retried on']").inner_text()
            == "5xx, connect, timeout, 429"
        )
        assert "100 ms" in await page.locator("dd[data-setting='Backoff']").inner_text()
        assert (await page.locator("dd[data-setting='Deadline']").inner_text()).startswith("60 s")

        models = page.get_by_role("table", name="Per-model settings")
        gpt4o = await models.locator("tr[data-model='gpt-4o'] > *").all_inner_texts()
        assert gpt4o[:3] == ["gpt-4o", "latency", "5"]
        assert gpt4o[5:] == ["30 s", "128,000 tokens"]
        mini = await models.locator("tr[data-model='gpt-4o-mini'] > *").all_inner_texts()
        assert mini[:3] == ["gpt-4o-mini", "cost", "3"]
        assert mini[6] == "unknown"
        # Values a model takes from the defaults are shown, muted, so the differences stand out.
        assert await models.locator("tr[data-model='gpt-4o-mini'] td.muted").count() == 5

        rules = page.get_by_role("table", name="Routing rules")
        rows = rules.locator("tbody tr")
        assert await rows.count() == 2
        eu, batch = [await rows.nth(i).locator("> *").all_inner_texts() for i in range(2)]
        assert eu == [
            "1",
            "eu",
            "key is eu-*, and header x-region is eu",
            "providers azure-eu only",
        ]
        assert batch == [
            "2",
            "batch",
            "tagged batch or nightly, and model is gpt-*",
            "model gpt-4o-mini",
        ]
        await checkpoint(page, "routing")

        await page.set_viewport_size({"width": 390, "height": 844})
        await assert_fits(page)
        await page.emulate_media(color_scheme="dark")
        await assert_contrast(page)
        await page.emulate_media(color_scheme="light")

    async with yaml_proxy(tmp_path, YAML) as url:
        await log_in(page, url)
        await open_page(page, "Routing")
        await page.get_by_role("heading", name="No routing configured").wait_for()
        example = await page.locator("pre.example").inner_text()
        assert example.startswith("routing:\n  fallbacks:")
        assert await page.get_by_role("button", name="Start from this example").count() == 0
        await assert_labelled(page)
        await assert_contrast(page)
    watch.check()


@needs_browser
async def test_routing_editor_in_database_mode(
    browser: Any, config_dsn: str, sql: asyncpg.Connection, tmp_path: Path
) -> None:
    """The section as JSON: a text that does not parse, or is not an object, is never sent;
    a section the server refuses shows its error naming the field and changes nothing; an
    edit made elsewhere meanwhile is not overwritten (If-Match); an accepted one is shown."""
    for name, mapping in PROVIDERS.items():
        await add_provider(sql, name, UPSTREAM, mapping)
    # The settings as database mode holds them: the file's, without providers and keys (a
    # settings file's rules could name no provider: checked once the rows are loaded).
    whole = tmp_path / "whole.yaml"
    whole.write_text(YAML)
    base = dataclasses.replace(load_config_file(whole), providers=())
    config, version = await initial_load(config_dsn, base, timeout_secs=5)
    app = create_app(config, version=version, database=DatabaseMode(config_dsn, base))
    (tmp_path / "routing.yaml").write_text(YAML + ROUTING)
    section = routing_data(load_config_file(tmp_path / "routing.yaml").routing)
    page = await browser.new_page(viewport={"width": 1280, "height": 900})
    watch = Watch(page)
    headers = {"Authorization": f"Bearer {ADMIN_KEY}", "Content-Type": "application/json"}

    async def rows() -> int:
        return int(await sql.fetchval("SELECT count(*) FROM model_fallbacks"))

    async with serve(app) as url, evidence(page, tmp_path):
        # The section into the tables, through the API the page uses.
        seeded = await page.request.put(
            url + "/admin/v1/routing", data=json.dumps(section), headers=headers
        )
        assert seeded.status == 200, await seeded.text()
        config = app[STORE].current.config
        await log_in(page, url)
        await open_page(page, "Routing")
        assert await page.get_by_text("Read-only.").count() == 0
        await page.get_by_role("button", name="Edit routing").click()
        form = page.get_by_role("form", name="Edit routing")
        area = form.get_by_label("Routing (JSON)")
        shown = json.loads(await area.input_value())
        assert shown == routing_data(config.routing)  # the section, every default written out
        await assert_labelled(page)
        await checkpoint(page, "routing-editor")

        # Not JSON, or not an object: refused in the page, nothing sent.
        await area.fill('{"fallbacks": {"gpt-4o": [')
        await form.get_by_role("button", name="Save routing").click()
        await form.get_by_text(
            re.compile(r"^Not valid JSON \(.*\)\. Nothing was saved\.$")
        ).wait_for()
        await area.fill('["gpt-4o"]')
        await form.get_by_role("button", name="Save routing").click()
        await form.get_by_text(re.compile("must be a JSON object")).wait_for()
        assert await rows() == 3

        # Refused by the server: its error, naming the field; nothing changes.
        bad = dict(shown, fallbacks={"gpt-4o": ["gpt-5-nowhere"]})
        await area.fill(json.dumps(bad))
        await form.get_by_role("button", name="Save routing").click()
        error = form.get_by_role("alert")
        await error.wait_for()
        text = await error.inner_text()
        assert "routing.fallbacks['gpt-4o'][0]" in text and "no provider serves" in text
        assert "Nothing was changed." in text
        assert await area.input_value() == json.dumps(bad)  # kept, to be fixed
        assert routing_data(app[STORE].current.config.routing) == shown  # nothing changed
        await form.get_by_role("button", name="Cancel").click()
        assert await chain(page, "fallbacks", "gpt-4o") == [
            "gpt-4o",
            "gpt-4o-mini",
            "claude-sonnet",
        ]

        # Accepted: the page shows the new section and the version it made.
        await page.get_by_role("button", name="Edit routing").click()
        good = dict(shown, fallbacks={"gpt-4o": ["claude-sonnet"]}, strategy="least_busy")
        await area.fill(json.dumps(good, indent=2))
        await form.get_by_role("button", name="Save routing").click()
        await page.get_by_text(re.compile(r"^Saved routing \(config v\d+\)\.$")).wait_for()
        assert await chain(page, "fallbacks", "gpt-4o") == ["gpt-4o", "claude-sonnet"]
        strategy = await page.locator("dd[data-setting='Strategy']").inner_text()
        assert strategy.startswith("least_busy")
        assert app[STORE].current.config.routing.fallbacks == (("gpt-4o", ("claude-sonnet",)),)
        assert await rows() == 3  # the chain changed in place: same rows

        # Someone else saves meanwhile (another tab, a script): this edit is not applied.
        await page.get_by_role("button", name="Edit routing").click()
        assert json.loads(await area.input_value())["strategy"] == "least_busy"
        elsewhere = await page.request.put(
            url + "/admin/v1/routing", data=json.dumps(dict(good, deadline_secs=5)), headers=headers
        )
        assert elsewhere.status == 200
        await area.fill(json.dumps(dict(good, strategy="cost")))
        await form.get_by_role("button", name="Save routing").click()
        await form.get_by_text(re.compile("changed elsewhere")).wait_for()
        await assert_contrast(page)
        await form.get_by_role("button", name="Reload routing").click()
        await form.wait_for(state="detached")
        await page.locator("dd[data-setting='Deadline']", has_text="5 s").wait_for()
        assert (await page.locator("dd[data-setting='Strategy']").inner_text()).startswith(
            "least_busy"
        )
        assert (await page.locator("dd[data-setting='Deadline']").inner_text()).startswith("5 s")

        # `{}` removes the section: the page explains routing and offers an example to start.
        await page.get_by_role("button", name="Edit routing").click()
        await area.fill("{}")
        await form.get_by_role("button", name="Save routing").click()
        await page.get_by_role("heading", name="No routing configured").wait_for()
        await page.get_by_role("button", name="Start from this example").click()
        example = json.loads(await area.input_value())
        assert example["fallbacks"] == {"gpt-4o": ["gpt-4o-mini", "claude-sonnet"]}
        await assert_labelled(page)
        await assert_contrast(page)
    watch.check()
