"""The Teams page (`js/pages/teams.js`) in a real browser, against `llm-proxy serve` in database
mode on a real PostgreSQL with a mock upstream and pricing: a team created from the page is
the admin API's; a key added on the team's page is the team's; requests of that key show as the
team's spend this period and per day; a team that still has keys is not deleted, and the page
says why. In YAML mode the same pages are read-only.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

from tests.helpers import Upstream, eventually
from tests.helpers.processes import serve_process
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

ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
# $2.50 a million prompt tokens, $10 a million completion tokens: every request costs a little.
SETTINGS = """\
pricing:
  "*": {input_per_mtok: 2.5, output_per_mtok: 10}
request_log:
  flush_interval_secs: 0.05
"""
KEYS = {"svc-a": "sk-team-page-a-0123456789", "svc-b": "sk-team-page-b-0123456789"}


async def admin(url: str, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    """One admin API call: its status and JSON answer."""
    async with (
        aiohttp.ClientSession(headers=ADMIN) as http,
        http.request(method, url + "/admin/v1" + path, json=body) as resp,
    ):
        return resp.status, await resp.json()


async def chat(url: str, key: str) -> None:
    async with (
        aiohttp.ClientSession(headers={"Authorization": f"Bearer {key}"}) as http,
        http.post(
            url + "/v1/chat/completions",
            json={"model": "m", "messages": [{"role": "user", "content": "hi"}]},
        ) as resp,
    ):
        assert resp.status == 200, await resp.text()
        await resp.read()


def usd(value: float) -> str:
    """A dollar amount as the page writes it (`fmtUsd`)."""
    return f"${value:.6f}" if 0 < abs(value) < 0.01 else f"${value:.2f}"


async def team_named(url: str, name: str) -> dict[str, Any] | None:
    status, answer = await admin(url, "GET", "/teams")
    assert status == 200, answer
    return next((t for t in answer["data"] if t["name"] == name), None)


@needs_browser
async def test_teams_page_in_database_mode(
    browser: Any, upstream: Upstream, config_dsn: str, sql: asyncpg.Connection, tmp_path: Path
) -> None:
    """Create a team (a mistake caught in the page, one refused by the server next to its
    field), add a key to it, see its spend after requests through the proxy (this period's,
    and per day with two earlier days of the request log), refuse and then do its deletion."""
    env = {"DB_URL": config_dsn, "ADMIN_KEY": ADMIN_KEY}
    async with serve_process(SETTINGS, tmp_path, env) as served:
        url = served.url
        status, answer = await admin(
            url,
            "POST",
            "/providers",
            {"name": "up", "api_base": upstream.api_base, "model_mapping": {"m": None}},
        )
        assert status == 201, answer
        for name, key in KEYS.items():
            # svc-b names a model the team will not allow.
            models = ["other-model"] if name == "svc-b" else None
            body = {"name": name, "key": key, "allowed_models": models}
            status, answer = await admin(url, "POST", "/credentials", body)
            assert status == 201, answer

        page = await browser.new_page(viewport={"width": 1280, "height": 900})
        watch = Watch(page)
        async with evidence(page, tmp_path):
            await log_in(page, url)
            await page.get_by_role("heading", name="Dashboard").wait_for()
            await open_page(page, "Teams")
            await page.get_by_text(re.compile("^No teams yet")).wait_for()

            # Create: a burst without a rate is caught in the page, and nothing is sent.
            await page.get_by_role("button", name="Create team").click()
            form = page.get_by_role("form", name="New team")
            await form.get_by_label("Name").fill("search")
            await form.get_by_label("Burst").fill("5")
            await form.get_by_role("button", name="Create team").click()
            burst = form.get_by_label("Burst")
            await form.get_by_text("A burst needs a rate (requests per second).").wait_for()
            assert await burst.get_attribute("aria-invalid") == "true"
            assert await team_named(url, "search") is None
            await assert_labelled(page)
            await assert_contrast(page)

            # A value only the server refuses: its error is shown next to the field it names.
            await form.get_by_label("Requests per second").fill("10")
            await form.get_by_label("Metadata (JSON)").fill('{"blob": "' + "x" * 20_000 + '"}')
            await form.get_by_role("button", name="Create team").click()
            metadata = form.get_by_label("Metadata (JSON)")
            await form.locator(".field-error:not([hidden])").wait_for()
            assert await metadata.get_attribute("aria-invalid") == "true"
            assert await team_named(url, "search") is None

            # Accepted: the admin API has it, as the form said.
            await metadata.fill('{"owner": "ana"}')
            await form.get_by_label("Allowed models").fill("m, gpt-4o*")
            await form.get_by_label("Budget (USD)").fill("5")
            await form.get_by_label("Stored objects").select_option("true")
            await form.get_by_role("button", name="Create team").click()
            created = re.compile(r"^Created team search \(config v\d+\)\.$")
            await page.get_by_text(created).wait_for()
            row = page.locator("tr[data-team='search']")
            await row.wait_for()
            team = await team_named(url, "search")
            assert team is not None
            assert team["allowed_models"] == ["m", "gpt-4o*"]
            assert team["rate_limit_rps"] == 10 and team["rate_limit_burst"] == 5
            assert team["max_budget_usd"] == 5 and team["budget_period"] == "monthly"
            assert team["shared_objects"] is True and team["metadata"] == {"owner": "ana"}
            assert "$0.00 of $5.00 this month" in await row.inner_text()
            await checkpoint(page, "teams")

            # Edit: the form holds what was saved; a change is the admin API's.
            await page.get_by_role("button", name="Edit search").click()
            form = page.get_by_role("form", name="Edit team search")
            assert await form.get_by_label("Allowed models").input_value() == "m, gpt-4o*"
            assert await form.get_by_label("Stored objects").input_value() == "true"
            await form.get_by_label("Tokens per minute").fill("5000")
            await form.get_by_role("button", name="Save").click()
            await page.get_by_text(re.compile(r"^Saved team search \(config v\d+\)\.$")).wait_for()
            await row.filter(has_text="5,000 tok/min").wait_for()
            team = await team_named(url, "search")
            assert team is not None and team["tokens_per_minute"] == 5000
            assert team["max_budget_usd"] == 5 and team["metadata"] == {"owner": "ana"}

            # The team's page: add svc-a to it by name.
            await row.get_by_role("link", name="search").click()
            await page.get_by_role("heading", name="Team search").wait_for()
            await page.get_by_text("No keys in this team yet.").wait_for()
            # A key whose models are not within the team's: refused, and the page says why.
            add = page.get_by_role("form", name="Add a key to search")
            await page.get_by_label("Key to add").select_option("svc-b")
            await page.get_by_role("button", name="Add to team").click()
            refused = add.get_by_role("alert")
            await refused.wait_for()
            text = await refused.inner_text()
            assert text.startswith("svc-b was not added:"), text
            assert "not within the models of its team 'search'" in text, text
            status, members = await admin(url, "GET", f"/teams/{team['id']}/members")
            assert members["data"] == []
            await page.get_by_label("Key to add").select_option("svc-a")
            await page.get_by_role("button", name="Add to team").click()
            await page.get_by_text("Added svc-a to search.").wait_for()
            keys = page.get_by_role("table", name="Keys of search")
            await keys.locator("tr[data-key='svc-a']").wait_for()
            status, members = await admin(url, "GET", f"/teams/{team['id']}/members")
            assert status == 200
            assert [k["name"] for k in members["data"]] == ["svc-a"]
            # Only keys not in it yet are offered.
            options = await page.get_by_label("Key to add").locator("option").all_inner_texts()
            assert options == ["svc-b"]
            await checkpoint(page, "team")

            # Requests of svc-a: the team's spend this period, and per day.
            for _ in range(3):
                await chat(url, KEYS["svc-a"])

            async def spent() -> bool:
                status, usage = await admin(url, "GET", f"/teams/{team['id']}/usage")
                return status == 200 and usage["spent_usd"] > 0

            await eventually(spent, timeout=10, interval=0.1)
            await open_page(page, "Teams")
            budget = await row.locator("td.budget-cell").inner_text()
            assert re.search(r"\$0\.\d+ of \$5\.00 this month", budget), budget
            assert not budget.startswith("$0.00 of")

            async def logged() -> float:
                status, usage = await admin(url, "GET", "/usage?group_by=day&team=search")
                assert status == 200, usage
                rows = usage["data"]
                return sum(r["cost_usd"] for r in rows) if len(rows) == 1 else 0.0

            today_cost = await eventually(logged, timeout=10, interval=0.1)
            # Two earlier days, as the request log sums them (the rollup's rows).
            today = datetime.now(UTC).date()
            earlier = {today - timedelta(days=2): 1.5, today - timedelta(days=9): 0.75}
            for day, cost in earlier.items():
                await sql.execute(
                    "INSERT INTO usage_daily (day, key_name, team, model, provider, requests, "
                    "prompt_tokens, completion_tokens, cost_usd) "
                    "VALUES ($1, 'svc-a', 'search', 'm', 'up', 10, 100, 100, $2)",
                    day,
                    cost,
                )
            this_month = today_cost + sum(c for d, c in earlier.items() if d.month == today.month)
            await row.get_by_role("link", name="search").click()
            chart = page.get_by_role("img", name=re.compile("^Spend of search"))
            await chart.wait_for()
            assert "budget $5.00 monthly" in (await chart.get_attribute("aria-label") or "")
            assert await chart.locator("rect").count() == 3  # a bar a day with spend
            await page.get_by_text(re.compile("^Spend per day as a table")).click()
            days = page.get_by_role("table", name="Spend per day of search")
            rows = [
                await r.locator("> *").all_inner_texts()
                for r in await days.locator("tbody tr").all()
            ]
            assert [r[0] for r in rows] == [d.isoformat() for d in [today, *earlier]]
            assert rows[0][1] == "3"  # requests through the proxy today
            assert rows[0][3] == usd(today_cost) and today_cost > 0
            assert [r[3] for r in rows[1:]] == ["$1.50", "$0.75"]
            assert rows[0][4] == usd(this_month)  # the month so far
            keys_cost = await keys.locator("tr[data-key='svc-a'] td.num").inner_text()
            assert keys_cost == usd(today_cost + sum(earlier.values()))  # 30 days in the team
            await assert_labelled(page)
            await checkpoint(page, "team-spend")
            # On a phone, in both themes.
            await page.set_viewport_size({"width": 390, "height": 844})
            await assert_fits(page)
            await page.emulate_media(color_scheme="dark")
            await assert_contrast(page)
            await page.emulate_media(color_scheme="light")
            await page.set_viewport_size({"width": 1280, "height": 900})

            # Its requests in the log: the Logs page, filtered by the team.
            await page.get_by_role("link", name="Requests of search in the log").click()
            await page.get_by_role("heading", name="Logs", exact=True).wait_for()
            assert await page.get_by_label("Team").input_value() == "search"
            logged = page.get_by_role("table", name="Requests").locator("tbody tr")
            await logged.nth(2).wait_for()
            assert await logged.count() == 3
            for text in await logged.all_inner_texts():
                assert text.split("\t")[2:4] == ["svc-a", "search"]
            await page.get_by_label("Team").fill("nobody")
            await page.get_by_role("button", name="Filter").click()
            await page.get_by_text("Nothing logged matches.").wait_for()

            # The dashboard, a line per team: search's (svc-a's requests).
            await open_page(page, "Dashboard")
            await page.get_by_label("Show").select_option("team")
            legend = page.locator("figure.chart .legend li", has_text="search")
            await legend.first.wait_for()

            # Delete a team that still has a key: refused (409), and the page says why.
            await open_page(page, "Teams")
            await page.get_by_role("button", name="Delete search").click()
            dialog = page.get_by_role("dialog", name="Delete team search?")
            await dialog.get_by_role("button", name="Delete").click()
            alert = page.get_by_role("alert")
            await alert.wait_for()
            text = await alert.inner_text()
            assert text.startswith("Team search was not deleted: This team still has keys"), text
            assert await alert.get_by_role("link", name="Open search to remove its keys").count()
            assert await team_named(url, "search") is not None
            await assert_contrast(page)

            # Remove its key, then the team goes.
            await alert.get_by_role("link").click()
            await page.get_by_role("button", name="Remove svc-a from search").click()
            await page.get_by_text(re.compile("^Removed svc-a from search")).wait_for()
            await page.get_by_text("No keys in this team yet.").wait_for()
            await open_page(page, "Teams")
            await page.get_by_role("button", name="Delete search").click()
            await dialog.get_by_role("button", name="Delete").click()
            await page.get_by_text(re.compile(r"^Deleted team search")).wait_for()
            await row.wait_for(state="detached")
            assert await team_named(url, "search") is None

            # The history names each change of the team, and shows what the edit changed.
            await open_page(page, "History")
            for verb in ("created", "changed", "deleted"):
                await page.locator("li.change", has_text=f"team search {verb}").first.wait_for()
            edit = page.locator("li.change", has_text="team search changed").last
            # (before: none, shown as an en dash)
            assert re.search(r"tokens_per_minute\s+\u2013\s+5000", await edit.inner_text())
        watch.check()


YAML = """\
admin_key: {admin}
providers:
  - {{name: up, api_base: "{upstream}", model_mapping: {{m: null}}}}
teams:
  - name: "<b>search</b>"
    allowed_models: [m]
    rate_limit: {{requests_per_second: 2, burst_size: 4}}
    max_budget_usd: 5
    budget_period: daily
master_keys:
  - {{name: svc-a, key: sk-team-page-a-0123456789, team: "<b>search</b>"}}
  - {{name: svc-b, key: sk-team-page-b-0123456789}}
"""


@needs_browser
async def test_teams_page_in_yaml_mode(browser: Any, upstream: Upstream, tmp_path: Path) -> None:
    """The file's teams and their keys, read-only: no create, edit, delete, add or remove;
    names shown as text, never as markup."""
    config = YAML.format(admin=ADMIN_KEY, upstream=upstream.api_base)
    async with serve_process(config, tmp_path) as served:
        page = await browser.new_page(viewport={"width": 1280, "height": 900})
        watch = Watch(page)
        async with evidence(page, tmp_path):
            await log_in(page, served.url)
            await page.get_by_text("YAML (read-only)").wait_for()
            await open_page(page, "Teams")
            await page.get_by_text("Read-only.").wait_for()
            assert await page.get_by_role("button", name="Create team").is_disabled()
            row = page.locator("tr[data-team='<b>search</b>']")
            await row.wait_for()
            assert await page.locator("b", has_text="search").count() == 0
            text = await row.inner_text()
            assert "2 req/s (burst 4)" in text and "of $5.00 today" in text
            assert await page.get_by_role("button", name=re.compile("^(Edit|Delete) ")).count() == 0

            await row.get_by_role("link").click()
            await page.get_by_role("heading", name="Team <b>search</b>").wait_for()
            keys = page.get_by_role("table", name="Keys of <b>search</b>")
            await keys.locator("tr[data-key='svc-a']").wait_for()
            assert await keys.locator("tbody tr").count() == 1
            assert await page.get_by_role("button", name=re.compile("^Remove ")).count() == 0
            assert await page.get_by_label("Key to add").count() == 0
            # No request log in YAML mode without request_log: the spend says why.
            await page.get_by_text(re.compile("^Spend unavailable")).wait_for()
            await assert_labelled(page)
            await assert_contrast(page)
        watch.check()
