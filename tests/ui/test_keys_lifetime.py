"""The Keys page's lifetimes and metadata (`js/pages/keys.js`) in a real browser, against
`llm-proxy serve` in database mode on a real PostgreSQL: a key's expiry (a UTC date and time,
whatever the browser's own timezone), its metadata (a JSON object), when it was last used and
who created it. What is tested: what the page shows, what it sends (never the read-only
fields, never a field the user did not touch), what the admin API then holds, and that a
refused form sends nothing; YAML mode shows the same read-only.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp

from tests.helpers import eventually
from tests.helpers.processes import serve_process
from tests.ui.test_ui import (
    ADMIN_KEY,
    Watch,
    admin_call,
    assert_contrast,
    assert_fits,
    assert_labelled,
    checkpoint,
    evidence,
    log_in,
    needs_browser,
    open_page,
)

SETTINGS = "request_log:\n  flush_interval_secs: 0.2\n"
# Far from UTC, and not by whole hours: a page that read the form's time as local time, or
# showed a stored one in local time, would be off by 5 h 30 min.
TIMEZONE = "Asia/Kolkata"
READ_ONLY = ("created_by", "last_used_at")


def in_days(days: int) -> datetime:
    """A UTC time `days` from now, on a whole minute (what a datetime-local input holds)."""
    when = datetime.now(UTC) + timedelta(days=days)
    return when.replace(hour=12, minute=30, second=0, microsecond=0)


def input_value(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M")


def shown(when: datetime) -> str:
    """An expiry in the list (under its header, "Expires (UTC)")."""
    return when.strftime("%Y-%m-%d %H:%M")


def stored_time(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


async def credential(url: str, name: str) -> dict[str, Any]:
    """The key named `name` as the admin API shows it."""
    data = (await admin_call(url, "GET", "/credentials"))["data"]
    (key,) = [k for k in data if k["name"] == name]
    assert isinstance(key, dict)
    return key


class Writes:
    """The page's writes to the credentials API (method and JSON body), as sent."""

    def __init__(self, page: Any) -> None:
        self.sent: list[tuple[str, dict[str, Any]]] = []
        page.on("request", self._request)

    def _request(self, request: Any) -> None:
        if request.method != "GET" and "/admin/v1/credentials" in request.url:
            self.sent.append((request.method, json.loads(request.post_data or "{}")))

    def last(self, method: str) -> dict[str, Any]:
        assert self.sent and self.sent[-1][0] == method, self.sent
        body = self.sent[-1][1]
        assert not set(READ_ONLY) & set(body), body  # shown, never sent
        return body


@needs_browser
async def test_a_keys_expiry_and_metadata_from_the_form(
    browser: Any, config_dsn: str, tmp_path: Path
) -> None:
    """Create a key with an expiry and metadata, edit each alone (the other is not sent), set
    it to never expire; metadata that is not JSON, or not an object, is refused in the form
    and nothing is sent or changed."""
    env = {"DB_URL": config_dsn, "ADMIN_KEY": ADMIN_KEY}
    expiry, later = in_days(40), in_days(75)
    async with serve_process(SETTINGS, tmp_path, env) as served:
        page = await browser.new_page(viewport={"width": 1280, "height": 900}, timezone_id=TIMEZONE)
        watch = Watch(page)
        writes = Writes(page)
        async with evidence(page, tmp_path):
            await log_in(page, served.url)
            await open_page(page, "Keys")
            await page.get_by_text("No master keys").wait_for()

            # A new key whose metadata does not parse: refused in the form, nothing created.
            await page.get_by_role("button", name="Create key").click()
            form = page.get_by_role("form", name="New key")
            await form.get_by_label("Name").fill("team-ml")
            expires = form.get_by_label("Expires at (UTC)")
            # A month alone, an incomplete date and time: the browser's own check stops the
            # form (the page's would, were it not there), and nothing is sent.
            await expires.click()
            await page.keyboard.type("01")
            assert await expires.evaluate("(input) => input.validity.badInput")
            await form.get_by_role("button", name="Create key").click()
            assert writes.sent == []
            await expires.fill(input_value(expiry))
            metadata = form.get_by_label("Metadata (JSON object)")
            await metadata.fill('{"team": "ml",')
            await form.get_by_role("button", name="Create key").click()
            not_json = re.compile(r"^Metadata: not valid JSON \(.*\)\. Nothing was saved\.$")
            await form.get_by_role("alert").filter(has_text=not_json).wait_for()
            assert await metadata.get_attribute("aria-invalid") == "true"
            assert writes.sent == []
            assert (await admin_call(served.url, "GET", "/credentials"))["data"] == []
            await assert_labelled(page)

            # Fixed: created with both, stored as sent.
            await metadata.fill('{"team": "ml", "owner": "alice", "tier": 2}')
            await form.get_by_role("button", name="Create key").click()
            await page.get_by_role("heading", name="Created key team-ml").wait_for()
            body = writes.last("POST")
            assert body["expires_at"] == expiry.isoformat()
            assert body["metadata"] == {"team": "ml", "owner": "alice", "tier": 2}
            key = await credential(served.url, "team-ml")
            assert stored_time(key["expires_at"]) == expiry
            assert key["metadata"] == {"team": "ml", "owner": "alice", "tier": 2}
            assert key["last_used_at"] is None

            row = page.locator("tr[data-key='team-ml']")
            cell = row.locator("td[data-cell='expires']")
            await cell.filter(has_text=shown(expiry)).wait_for()
            assert "expired" not in await cell.inner_text()
            assert await row.locator("td[data-cell='last-used']").inner_text() == "never"
            created_by = await row.locator("td[data-cell='created-by']").inner_text()
            assert created_by == (key["created_by"] or "—")
            assert (
                await row.locator("[data-cell='metadata']").text_content()
                == "Metadata: owner=alice, team=ml, tier=2"  # by name
            )
            await checkpoint(page, "keys-lifetime")

            # Edit: the stored values, in the form's terms (the expiry in UTC).
            await page.get_by_role("button", name="Edit team-ml").click()
            form = page.get_by_role("form", name="Edit key team-ml")
            expires = form.get_by_label("Expires at (UTC)")
            metadata = form.get_by_label("Metadata (JSON object)")
            assert await expires.input_value() == input_value(expiry)
            assert json.loads(await metadata.input_value()) == key["metadata"]
            await checkpoint(page, "keys-lifetime-form")

            # Metadata that is not an object, or not JSON: refused, nothing sent or changed.
            sent = len(writes.sent)
            for text, error in [
                ('["ml"]', "must be a JSON object"),
                ("null", "must be a JSON object"),
                ("{team: ml}", "not valid JSON"),
            ]:
                await metadata.fill(text)
                await form.get_by_role("button", name="Save").click()
                await form.get_by_role("alert").filter(has_text=error).wait_for()
                assert await form.get_by_role("alert").count() == 1  # the last refusal only
            assert len(writes.sent) == sent
            assert await credential(served.url, "team-ml") == key
            await assert_contrast(page)

            # An object the server refuses (too large): its error, naming the field; the text
            # is kept, to be fixed, and nothing changes.
            large = json.dumps({"notes": "x" * 20_000})
            await metadata.fill(large)
            await form.get_by_role("button", name="Save").click()
            await form.get_by_role("alert").filter(has_text=re.compile(r"^metadata: ")).wait_for()
            assert len(writes.sent) == sent + 1
            assert await metadata.input_value() == large
            assert await credential(served.url, "team-ml") == key

            # Metadata alone: the expiry, untouched, is not sent and stays as it was.
            await metadata.fill('{"team": "infra"}')
            await form.get_by_role("button", name="Save").click()
            await row.locator("[data-cell='metadata']", has_text="team=infra").wait_for()
            body = writes.last("PATCH")
            assert body["metadata"] == {"team": "infra"} and "expires_at" not in body
            edited = await credential(served.url, "team-ml")
            assert edited["metadata"] == {"team": "infra"}
            assert edited["expires_at"] == key["expires_at"]

            # The expiry alone: the metadata is not sent.
            await page.get_by_role("button", name="Edit team-ml").click()
            await expires.fill(input_value(later))
            await form.get_by_role("button", name="Save").click()
            await cell.filter(has_text=shown(later)).wait_for()
            body = writes.last("PATCH")
            assert body["expires_at"] == later.isoformat() and "metadata" not in body
            edited = await credential(served.url, "team-ml")
            assert stored_time(edited["expires_at"]) == later
            assert edited["metadata"] == {"team": "infra"}

            # Never: the expiry cleared; emptied metadata: none.
            await page.get_by_role("button", name="Edit team-ml").click()
            await form.get_by_role("button", name=re.compile("^Never")).click()
            assert await expires.input_value() == ""
            await metadata.fill("")
            await form.get_by_role("button", name="Save").click()
            await cell.filter(has_text="never").wait_for()
            assert writes.last("PATCH")["expires_at"] is None
            edited = await credential(served.url, "team-ml")
            assert edited["expires_at"] is None and edited["metadata"] == {}
            assert await row.locator("[data-cell='metadata']").count() == 0  # none shown
        watch.check()


@needs_browser
async def test_an_expired_key_and_a_used_one(browser: Any, config_dsn: str, tmp_path: Path) -> None:
    """A key whose expiry has passed is marked expired (and refused by the proxy); one that
    has been used shows when; long metadata is folded; the page fits a phone, in both
    themes."""
    env = {"DB_URL": config_dsn, "ADMIN_KEY": ADMIN_KEY}
    past = datetime(2025, 3, 1, 8, 15, tzinfo=UTC)
    soon = datetime.now(UTC) + timedelta(days=2)
    old_key, used_key = "sk-ui-expired-0123456789", "sk-ui-used-0123456789"
    long_metadata = {"description": "x" * 80, "team": "platform"}
    async with serve_process(SETTINGS, tmp_path, env) as served:
        await admin_call(
            served.url,
            "POST",
            "/credentials",
            {"name": "old", "key": old_key, "expires_at": past.isoformat()},
        )
        await admin_call(
            served.url,
            "POST",
            "/credentials",
            {
                "name": "used",
                "key": used_key,
                "expires_at": soon.isoformat(),
                "metadata": long_metadata,
            },
        )
        async with aiohttp.ClientSession() as http:
            async with http.get(
                served.url + "/v1/models", headers={"Authorization": f"Bearer {old_key}"}
            ) as resp:
                assert resp.status == 401
                assert (await resp.json())["error"]["code"] == "expired_api_key"
            async with http.get(
                served.url + "/v1/models", headers={"Authorization": f"Bearer {used_key}"}
            ) as resp:
                assert resp.status == 200

        async def used_at() -> str:
            value = (await credential(served.url, "used"))["last_used_at"]
            return value if isinstance(value, str) else ""

        last_used: str = await eventually(used_at, timeout=15, interval=0.2, what="last_used_at")
        page = await browser.new_page(viewport={"width": 1280, "height": 900}, timezone_id=TIMEZONE)
        watch = Watch(page)
        async with evidence(page, tmp_path):
            await log_in(page, served.url)
            await open_page(page, "Keys")
            old = page.locator("tr[data-key='old']")
            expires = old.locator("td[data-cell='expires']")
            await expires.wait_for()
            assert await expires.locator(".badge.bad").inner_text() == "expired"
            assert shown(past) in await expires.inner_text()
            assert await old.locator("td[data-cell='last-used']").inner_text() == "never"

            used = page.locator("tr[data-key='used']")
            soon_cell = used.locator("td[data-cell='expires']")
            assert "expired" not in await soon_cell.inner_text()
            assert re.fullmatch(r"in \d+ (h|d)", await soon_cell.locator(".badge").inner_text())
            when = used.locator("td[data-cell='last-used'] time")
            assert re.fullmatch(r"just now|\d+ min ago", await when.inner_text())
            # (this process's own note of the use, not yet written to the database, is read
            # off two clocks: it may move by microseconds from one read to the next)
            shown_at = stored_time(await when.get_attribute("datetime"))
            assert shown_at is not None
            assert abs(shown_at - datetime.fromisoformat(last_used)) < timedelta(seconds=1)
            metadata = used.locator("details[data-cell='metadata']")
            summary = await metadata.locator("summary").text_content() or ""
            assert summary.startswith("Metadata: description=xxx") and summary.endswith("…")
            await metadata.locator("summary").click()
            assert json.loads(await metadata.locator("pre").inner_text()) == long_metadata
            await checkpoint(page, "keys-expired")

            await page.set_viewport_size({"width": 390, "height": 844})
            await assert_fits(page)
            await page.emulate_media(color_scheme="dark")
            await assert_contrast(page)
            await page.get_by_role("button", name="Edit old").click()
            form = page.get_by_role("form", name="Edit key old")
            assert await form.get_by_label("Expires at (UTC)").input_value() == input_value(past)
            await assert_fits(page)
            await assert_contrast(page)
            await assert_labelled(page)
        watch.check()


YAML = """\
admin_key: {admin}
providers: []
master_keys:
  - name: yaml-old
    key: sk-yaml-old-0123456789
    expires_at: "2025-03-01T08:15:00+00:00"
    created_by: ops-team
    metadata: {{team: ml}}
  - name: yaml-forever
    key: sk-yaml-forever-0123456789
"""


@needs_browser
async def test_the_keys_lifetimes_in_yaml_mode(browser: Any, tmp_path: Path) -> None:
    """Read-only: the same columns, and no form to change them."""
    async with serve_process(YAML.format(admin=ADMIN_KEY), tmp_path) as served:
        page = await browser.new_page(timezone_id=TIMEZONE)
        watch = Watch(page)
        async with evidence(page, tmp_path):
            await log_in(page, served.url)
            await open_page(page, "Keys")
            await page.get_by_text("Read-only.").wait_for()
            assert await page.get_by_role("button", name="Create key").is_disabled()
            assert await page.get_by_role("button", name=re.compile("^Edit")).count() == 0
            old = page.locator("tr[data-key='yaml-old']")
            expires = old.locator("td[data-cell='expires']")
            await expires.filter(has_text="expired").wait_for()
            assert "2025-03-01 08:15" in await expires.inner_text()
            assert await old.locator("td[data-cell='created-by']").inner_text() == "ops-team"
            assert await old.locator("[data-cell='metadata']").text_content() == "Metadata: team=ml"
            forever = page.locator("tr[data-key='yaml-forever']")
            assert await forever.locator("td[data-cell='expires']").inner_text() == "never"
            assert await forever.locator("td[data-cell='created-by']").inner_text() == "—"
            assert await forever.locator("[data-cell='metadata']").count() == 0
            await assert_labelled(page)
            await assert_contrast(page)
        watch.check()
