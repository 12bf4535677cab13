"""The admin web UI (`/ui/`) in a real headless browser: Debian's chromium driven by
Playwright, against `llm-proxy serve` as a subprocess (uvloop, as in production) with
PostgreSQL and a fake upstream on loopback.

The scenario is the operator's: log in (a wrong admin key refused), create a provider, probe
it, create a key and copy it, chat in the playground and watch the reply stream in, find the
request in the logs, see it counted on the dashboard, roll the provider's creation back and see
it gone. YAML mode shows the same pages read-only. Each page's screenshot is written to
$LLM_PROXY_UI_SCREENSHOTS when set (`make screenshots` refreshes the README's).

Without chromium or Playwright the browser tests skip, unless LLM_PROXY_REQUIRE_BROWSER=1
(`.ci/run` installs both and sets it, so CI cannot pass by skipping them).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from yarl import URL

from llm_proxy.testing.mock import MockOptions, create_mock_app
from tests.helpers import eventually, sdk, serve
from tests.helpers.processes import serve_process

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ADMIN_KEY = "admin-ui-test-key-0123456789"
SHOTS = os.environ.get("LLM_PROXY_UI_SCREENSHOTS")
PAGES = ("Dashboard", "Providers", "Keys", "Logs", "History", "Playground")
# Flags for a sandboxed, offline machine (see the env notes): no sandbox as root, no GPU, no
# background calls to Google's hosts.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _browser_available() -> str | None:
    try:
        import playwright  # noqa: F401
    except ImportError:
        return "playwright is not installed"
    if not os.path.exists(CHROMIUM):
        return "chromium is not installed (Debian package chromium)"
    return None


_missing = _browser_available()
needs_browser = pytest.mark.skipif(
    _missing is not None and os.environ.get("LLM_PROXY_REQUIRE_BROWSER") != "1",
    reason=f"no browser: {_missing}",
)


class Watch:
    """The page's console errors and uncaught exceptions: a CSP violation or a JS error
    fails the test."""

    def __init__(self, page: Any) -> None:
        self.problems: list[str] = []
        page.on("pageerror", lambda exc: self.problems.append(f"page error: {exc}"))
        page.on("console", self._console)

    def _console(self, message: Any) -> None:
        text = message.text
        # The browser's own line for an answer the test provoked (the wrong key's 401, a
        # request log still empty) is expected; anything else is not.
        if message.type == "error" and "Failed to load resource" not in text:
            self.problems.append(f"console: {text}")

    def check(self) -> None:
        assert not self.problems, self.problems


@asynccontextmanager
async def evidence(page: Any, tmp_path: Path) -> AsyncIterator[None]:
    """On a failure, the page as it was: a screenshot and its text, next to the test."""
    try:
        yield
    except BaseException:
        path = tmp_path / "failure.png"
        await page.screenshot(path=str(path), full_page=True)
        text = await page.evaluate("() => document.body.innerText")
        print(f"failure screenshot: {path}\npage text:\n{text}")
        raise


async def checkpoint(page: Any, name: str) -> None:
    """A page with data on it: legible and labelled, and its picture for the README."""
    await assert_contrast(page)
    await assert_labelled(page)
    if SHOTS:
        Path(SHOTS).mkdir(parents=True, exist_ok=True)
        # The whole page, cut at 1,300 px (a long table's first rows say enough).
        size = await page.evaluate(
            "() => [document.documentElement.scrollWidth, document.documentElement.scrollHeight]"
        )
        clip = {"x": 0, "y": 0, "width": size[0], "height": min(size[1], 1300)}
        await page.screenshot(path=str(Path(SHOTS) / f"{name}.png"), full_page=True, clip=clip)


async def assert_labelled(page: Any) -> None:
    """Every form control has a label, every button a name: the page works with a screen
    reader and keyboard."""
    unlabelled = await page.evaluate(
        """() => [...document.querySelectorAll('input, select, textarea, button')]
            .filter((el) => !el.closest('[aria-hidden="true"]') && el.type !== 'hidden')
            .filter((el) => el.tagName === 'BUTTON'
                ? !(el.textContent.trim() || el.getAttribute('aria-label'))
                : !(el.labels && el.labels.length) && !el.getAttribute('aria-label'))
            .map((el) => el.outerHTML.slice(0, 120))"""
    )
    assert unlabelled == []


# WCAG 2.x contrast of every visible text against the background it sits on (the first
# ancestor with an opaque background): at least 4.5:1, or 3:1 for large text.
_CONTRAST_JS = """() => {
  const rgb = (text) => (text.match(/[\\d.]+/g) || []).map(Number);
  const lum = ([r, g, b]) => {
    const f = (c) => { c /= 255; return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4; };
    return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
  };
  const background = (el) => {
    for (let e = el; e; e = e.parentElement) {
      const c = rgb(getComputedStyle(e).backgroundColor);
      if (c.length === 3 || (c.length === 4 && c[3] === 1)) return c.slice(0, 3);
    }
    return [255, 255, 255];
  };
  const low = [];
  for (const el of document.querySelectorAll('body *')) {
    const text = [...el.childNodes].filter((n) => n.nodeType === 3)
      .map((n) => n.textContent).join('').trim();
    const skipped = '[disabled], dialog:not([open]), .visually-hidden, .offscreen, svg';
    if (!text || el.closest(skipped)) continue;
    const style = getComputedStyle(el);
    const shown = style.visibility !== 'hidden' && el.getClientRects().length > 0;
    if (!shown) continue;
    const [a, b] = [lum(rgb(style.color).slice(0, 3)), lum(background(el))];
    const ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
    const size = parseFloat(style.fontSize);
    const large = size >= 24 || (size >= 18.66 && Number(style.fontWeight) >= 700);
    if (ratio < (large ? 3 : 4.5)) low.push(`${text.slice(0, 40)}: ${ratio.toFixed(2)}`);
  }
  return low;
}"""


async def assert_contrast(page: Any) -> None:
    assert await page.evaluate(_CONTRAST_JS) == []


async def assert_fits(page: Any) -> None:
    """Nothing wider than the viewport but the tables' own scroll boxes."""
    overflow = await page.evaluate(
        "() => document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    assert overflow <= 0


async def open_page(page: Any, name: str) -> None:
    await page.get_by_role("link", name=name, exact=True).click()
    await page.get_by_role("heading", name=name, exact=True).wait_for()


async def log_in(page: Any, url: str, key: str = ADMIN_KEY) -> None:
    await page.goto(url + "/ui/")
    await page.get_by_label("Admin key").fill(key)
    await page.get_by_label("Admin key").press("Enter")  # the keyboard alone logs in


@pytest.fixture
async def slow_upstream() -> AsyncIterator[str]:
    # 20 chunks 25 ms apart: the reply visibly streams in.
    async with serve(create_mock_app(MockOptions(delay_ms=25))) as url:
        yield url


SETTINGS = """\
pricing:
  "*": {input_per_mtok: 2.5, output_per_mtok: 10}
request_log:
  flush_interval_secs: 2  # the Logs page is refreshed (Filter) until the request shows
"""


@needs_browser
async def test_operator_walkthrough(
    browser: Any, slow_upstream: str, config_dsn: str, tmp_path: Path
) -> None:
    env = {"DB_URL": config_dsn, "ADMIN_KEY": ADMIN_KEY}
    async with serve_process(SETTINGS, tmp_path, env) as served:
        context = await browser.new_context(viewport={"width": 1280, "height": 900})
        await context.grant_permissions(["clipboard-read", "clipboard-write"])
        page = await context.new_page()
        watch = Watch(page)
        async with evidence(page, tmp_path):
            # A wrong admin key is refused, and nothing is kept.
            await log_in(page, served.url, "not-the-admin-key")
            await page.get_by_text("That admin key was refused.").wait_for()
            assert await page.evaluate("() => sessionStorage.length") == 0
            await checkpoint(page, "login")
            await log_in(page, served.url)
            await page.get_by_role("heading", name="Dashboard").wait_for()
            assert await page.evaluate("() => sessionStorage.length") == 1
            assert await context.cookies() == []  # nothing a cross-site request could ride

            # Create a provider, then probe it.
            await open_page(page, "Providers")
            await assert_labelled(page)
            await page.get_by_role("button", name="Add provider").click()
            form = page.get_by_role("form", name="New provider")
            await form.get_by_label("Name").fill("mock-a")
            await form.get_by_label("API base URL").fill(slow_upstream + "/v1")
            await form.get_by_label("API key").fill("sk-upstream-secret")
            await form.get_by_label("Models").fill("gpt-4o-mini\nfast = gpt-4o-mini")
            await form.get_by_label("Request timeout (s)").fill("30")
            await assert_labelled(page)
            await form.get_by_role("button", name="Create provider").click()
            note = page.get_by_text(re.compile(r"Created provider mock-a \(config v\d+\)"))
            await note.wait_for()
            served_version = re.findall(r"v(\d+)", await note.inner_text())[0]
            # The header follows: it shows the version now served.
            await page.locator("header .version", has_text=f"config v{served_version}").wait_for()
            row = page.locator("tr[data-provider='mock-a']")
            await row.wait_for()
            assert "fast, gpt-4o-mini" in await row.inner_text()  # (jsonb orders keys)
            await page.get_by_role("button", name="Probe mock-a").click()
            probe = page.get_by_role("table", name="Probe of mock-a")
            await probe.wait_for()
            assert "ok" in await probe.inner_text()
            assert re.search(r"\d+(\.\d)? ms", await probe.inner_text())
            await checkpoint(page, "providers")

            # Create a key; it is shown once and copied to the clipboard.
            await open_page(page, "Keys")
            await page.get_by_role("button", name="Create key").click()
            form = page.get_by_role("form", name="New key")
            await form.get_by_label("Name").fill("team-ui")
            await form.get_by_label("Requests per second").fill("1000")
            await form.get_by_label("Budget (USD)").fill("10")
            await form.get_by_role("button", name="Create key").click()
            await page.get_by_role("heading", name="Created key team-ui").wait_for()
            shown = await page.get_by_label("Key (shown once)").input_value()
            assert shown.startswith("sk-")
            await page.get_by_role("button", name="Copy", exact=True).click()
            await page.get_by_text("Copied.").wait_for()
            copied = await page.evaluate("() => navigator.clipboard.readText()")
            assert copied == shown
            key_row = page.locator("tr[data-key='team-ui']")
            await key_row.wait_for()
            assert shown[:6] in await key_row.inner_text()  # its prefix, never the key
            assert shown not in await key_row.inner_text()
            await checkpoint(page, "keys")

            # Traffic before the chat, enough for the log to page (50 rows a page).
            async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {copied}"}) as http:
                for _ in range(55):
                    body = {"model": "fast", "messages": [{"role": "user", "content": "hi"}]}
                    async with http.post(served.url + "/v1/chat/completions", json=body) as r:
                        assert r.status == 200

            # Chat in the playground with that key: the reply streams in.
            await open_page(page, "Playground")
            await assert_labelled(page)
            await page.get_by_label("Master key").fill(copied)
            await page.get_by_role("button", name="Load models").click()
            await page.locator("select[name=model] option[value='gpt-4o-mini']").wait_for(
                state="attached"
            )
            await page.get_by_label("Model").select_option("gpt-4o-mini")
            await page.get_by_label("Message").fill("Say hello")
            # Count the reply's updates as they happen: a streamed reply grows many times.
            await page.evaluate(
                """() => { window.replyUpdates = 0;
                    new MutationObserver((records) => {
                      for (const r of records) if (r.target.closest && r.target.closest('.reply')
                          || r.target.parentElement && r.target.parentElement.closest('.reply'))
                        window.replyUpdates += r.addedNodes.length;
                    }).observe(document.body, {subtree: true, childList: true}); }"""
            )
            await page.get_by_role("button", name="Send").click()
            await page.locator("[data-fact='Tokens']").wait_for()
            reply = await page.locator(".msg.assistant .reply").inner_text()
            assert reply.startswith("tok0 tok1") and "tok19" in reply
            assert await page.evaluate("() => window.replyUpdates") >= 10
            assert await page.locator("[data-fact='Provider']").inner_text() == "mock-a"
            assert await page.locator("[data-fact='Status']").inner_text() == "200"
            assert re.fullmatch(
                r"[\d.]+ ms", await page.locator("[data-fact='Proxy overhead']").inner_text()
            )
            request_id = await page.locator("[data-fact='Request id']").inner_text()
            assert re.fullmatch(r"[0-9a-f]{24}", request_id)
            await checkpoint(page, "playground")

            # The request is in the log (written off the request path: poll briefly).
            await open_page(page, "Logs")
            logged = page.locator(f"tr[data-request-id='{request_id}']")
            for _ in range(50):
                if await logged.count():
                    break
                await page.get_by_role("button", name="Filter").click()
                await page.wait_for_timeout(200)
            assert "team-ui" in await logged.inner_text()
            assert "mock-a" in await logged.inner_text()
            rows = page.locator("tr[data-request-id]")
            assert await rows.count() == 50
            await page.get_by_role("button", name="Older →").click()
            await page.get_by_text("Page 2").wait_for()
            assert 1 <= await rows.count() <= 10 and await logged.count() == 0
            assert await page.get_by_role("button", name="Older →").is_disabled()
            await page.get_by_role("button", name="← Newer").click()
            await page.get_by_text("Page 1").wait_for()
            await logged.wait_for()
            await checkpoint(page, "logs")
            await page.get_by_label("Key").fill("nobody")
            await page.get_by_role("button", name="Filter").click()
            await page.get_by_text("Nothing logged matches.").wait_for()
            await page.get_by_label("Key").fill("team-ui")
            await page.get_by_role("button", name="Filter").click()
            await logged.get_by_role("link", name=request_id).click()
            detail = page.get_by_role("region", name=f"Request {request_id}")
            await detail.wait_for()
            text = await detail.inner_text()
            assert "gpt-4o-mini" in text and "mock-a" in text and "team-ui" in text
            # Labelled for people: no column names (ttft_ms, key_name, model_sent) on the page.
            labels = await detail.locator("dt").all_inner_texts()
            assert {"Time to first token", "Key", "Model sent upstream", "Streamed"} <= set(labels)
            assert not [label for label in labels if "_" in label]
            await checkpoint(page, "log-detail")

            # The dashboard counts it, overall and per key.
            await open_page(page, "Dashboard")
            requests = page.locator("#tile-requests .tile-value")
            await requests.wait_for()
            assert int((await requests.inner_text()).replace(",", "")) >= 57
            # The 57 requests came in the last seconds: the 30-second rate shows them.
            rate = await page.locator("#tile-rps .tile-value").inner_text()
            assert float(rate) > 0
            await page.get_by_label("Show").select_option("key")
            await page.locator("figure.chart .legend li", has_text="team-ui").first.wait_for()
            healthy = page.get_by_role("table", name="Providers")
            assert (
                "mock-a" in await healthy.inner_text() and "healthy" in await healthy.inner_text()
            )
            await page.get_by_label("Show").select_option("")
            await page.locator("figure.chart .legend li", has_text="p95").first.wait_for()
            await assert_labelled(page)
            await checkpoint(page, "dashboard")

            # Roll the provider's creation back (with confirmation); the provider is gone.
            await open_page(page, "History")
            created = page.locator("li.change", has_text="provider mock-a created")
            await created.wait_for()
            version = int(await created.get_attribute("data-version"))
            await checkpoint(page, "history")
            await created.get_by_role("button", name=f"Roll back version {version}").click()
            dialog = page.get_by_role("dialog", name=f"Roll back to version {version - 1}?")
            await dialog.get_by_role("button", name="Cancel").click()  # cancel changes nothing
            assert await page.locator("li.change", has_text="provider mock-a created").count()
            await created.get_by_role("button", name=f"Roll back version {version}").click()
            await dialog.get_by_role("button", name="Roll back").click()
            await page.get_by_text(f"Rolled back to version {version - 1}").wait_for()
            await open_page(page, "Providers")
            await page.get_by_text("No providers yet.").wait_for()
            assert await page.locator("tr[data-provider='mock-a']").count() == 0
            async with (
                aiohttp.ClientSession() as http,
                http.get(
                    served.url + "/admin/v1/providers",
                    headers={"Authorization": f"Bearer {ADMIN_KEY}"},
                ) as resp,
            ):
                assert (await resp.json())["data"] == []

            # On a phone: every page fits the screen; in both themes, every text is legible.
            await page.set_viewport_size({"width": 390, "height": 844})
            for name in PAGES:
                await open_page(page, name)
                await page.wait_for_timeout(100)
                await assert_fits(page)
                await assert_contrast(page)
                await page.emulate_media(color_scheme="dark")
                await assert_contrast(page)
                await page.emulate_media(color_scheme="light")
                if name == "Dashboard":
                    await checkpoint(page, "phone-dashboard")

            # Logging out forgets the key.
            await page.get_by_role("button", name="Log out").click()
            await page.get_by_label("Admin key").wait_for()
            assert await page.evaluate("() => sessionStorage.length") == 0
        watch.check()
        await context.close()


YAML_CONFIG = """\
admin_key: {admin}
providers:
  - name: "<img src=x onerror=window.pwned=1>"
    api_base: {upstream}/v1
    api_key: sk-upstream-secret
    model_mapping: {{gpt-4o-mini: gpt-4o-mini}}
master_keys:
  - name: "<b>team</b>"
    key: sk-yaml-team-0123456789
"""


@needs_browser
async def test_yaml_mode_is_read_only(browser: Any, slow_upstream: str, tmp_path: Path) -> None:
    config = YAML_CONFIG.format(admin=ADMIN_KEY, upstream=slow_upstream)
    async with serve_process(config, tmp_path) as served:
        page = await browser.new_page()
        watch = Watch(page)
        await log_in(page, served.url)
        await page.get_by_text("YAML (read-only)").wait_for()

        await open_page(page, "Providers")
        await page.get_by_text("Read-only.").wait_for()
        assert await page.get_by_role("button", name="Add provider").is_disabled()
        # Names are shown as text, never run as markup.
        await page.get_by_text("<img src=x onerror=window.pwned=1>").first.wait_for()
        assert await page.evaluate("() => window.pwned") is None
        assert await page.get_by_role("button", name=re.compile("^Delete")).count() == 0
        # Probing is not a write: it works in YAML mode.
        await page.get_by_role("button", name=re.compile("^Probe")).click()
        await page.get_by_role("table", name=re.compile("^Probe of")).wait_for()
        await checkpoint(page, "yaml-providers")

        await open_page(page, "Keys")
        assert await page.get_by_role("button", name="Create key").is_disabled()
        await page.get_by_text("<b>team</b>").wait_for()
        assert await page.locator("b", has_text="team").count() == 0

        await open_page(page, "History")
        await page.get_by_text("needs database mode").wait_for()
        await open_page(page, "Logs")
        await page.get_by_text(re.compile("database")).first.wait_for()

        # The admin key changes under an open dashboard (file edited, SIGHUP): its next
        # refresh is refused and the page asks for the new key.
        await open_page(page, "Dashboard")
        (path,) = tmp_path.glob("proxy-*.yaml")
        path.write_text(config.replace(ADMIN_KEY, ADMIN_KEY + "-rotated"))
        served.proc.send_signal(signal.SIGHUP)
        await page.get_by_text("Your admin key is no longer accepted.").wait_for(timeout=15_000)
        assert await page.evaluate("() => sessionStorage.length") == 0
        # The dashboard stopped polling: the login form keeps what is typed into it.
        await page.get_by_label("Admin key").fill("half-typed")
        await page.wait_for_timeout(6_000)  # past the dashboard's 5-second refresh
        assert await page.get_by_label("Admin key").input_value() == "half-typed"
        await log_in(page, served.url, ADMIN_KEY + "-rotated")
        await page.get_by_role("heading", name="Dashboard").wait_for()
        watch.check()


async def test_ui_is_served_only_with_an_admin_key(slow_upstream: str, tmp_path: Path) -> None:
    """No browser needed: what the server answers for /ui/."""
    config = f"providers:\n  - name: a\n    api_base: {slow_upstream}/v1\n"
    async with (
        serve_process(config, tmp_path) as served,
        aiohttp.ClientSession() as http,
        http.get(served.url + "/ui/") as resp,
    ):
        assert resp.status == 404
        error = (await resp.json())["error"]
        assert error["code"] == "ui_disabled" and "ADMIN_KEY" in error["message"]
    env = {"ADMIN_KEY": ADMIN_KEY}
    async with serve_process(config, tmp_path, env) as served, aiohttp.ClientSession() as http:
        async with http.get(served.url + "/ui", allow_redirects=False) as resp:
            assert resp.status == 308 and resp.headers["Location"] == "/ui/"
        async with http.get(served.url + "/ui/") as resp:
            assert resp.status == 200 and resp.content_type == "text/html"
            csp = resp.headers["Content-Security-Policy"]
            assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
            assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
            assert resp.headers["X-Content-Type-Options"] == "nosniff"
            etag = resp.headers["ETag"]
            page = await resp.text()
        async with http.get(served.url + "/ui/", headers={"If-None-Match": etag}) as resp:
            assert resp.status == 304
        # Every script is a file from this origin: no inline script, no handler attribute.
        assert re.findall(r"<script(?![^>]*\bsrc=)[^>]*>", page) == []
        assert not re.search(r"\son\w+=", page)
        for src in re.findall(r'(?:src|href)="([^"]+)"', page):
            async with http.get(served.url + "/ui/" + src) as resp:
                assert resp.status == 200, src
        async with http.get(served.url + "/ui/js/app.js") as resp:
            assert resp.content_type == "text/javascript"
            assert resp.headers["Content-Encoding"] == "gzip"  # compressed once, at startup
            assert "navigate" in await resp.text()
        async with http.get(
            served.url + "/ui/js/app.js", headers={"Accept-Encoding": "identity"}
        ) as resp:
            assert "Content-Encoding" not in resp.headers and "navigate" in await resp.text()
        for missing in ("/ui/nope.js", "/ui/%2e%2e/pyproject.toml", "/ui/js/..%2f..%2fhandler.py"):
            async with http.get(URL(served.url + missing, encoded=True)) as resp:
                assert resp.status == 404, missing
        # The UI's assets need no key; the API behind them does.
        async with http.get(served.url + "/admin/v1/stats") as resp:
            assert resp.status == 401


def test_assets_never_build_html_from_strings() -> None:
    """The UI puts what the API returns in the page as text: no innerHTML, outerHTML,
    insertAdjacentHTML, document.write or eval anywhere in its scripts."""
    static = Path(__file__).resolve().parents[2] / "llm_proxy" / "ui" / "static"
    scripts = list(static.rglob("*.js"))
    assert len(scripts) >= 9
    for script in scripts:
        text = script.read_text()
        for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
            assert sink not in text, f"{script.name} uses {sink}"


async def chat_status(url: str, key: str) -> int:
    """One chat completion through the official SDK: 200, or the status it raised."""
    import openai

    client = sdk(url, key)
    try:
        await client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]
        )
    except openai.APIStatusError as exc:
        return exc.status_code
    finally:
        await client.close()
    return 200


@needs_browser
async def test_editing_providers_and_keys(
    browser: Any, slow_upstream: str, config_dsn: str, tmp_path: Path
) -> None:
    """Edit, disable, enable, rotate and delete from the pages; the proxy (called with the
    openai SDK) follows each change, and the history shows each as a before/after diff."""
    env = {"DB_URL": config_dsn, "ADMIN_KEY": ADMIN_KEY}
    async with serve_process(SETTINGS, tmp_path, env) as served:
        # A key of the test's own, to call the proxy with while the pages change it.
        ours = "sk-ui-test-caller-0123456789"
        async with (
            aiohttp.ClientSession() as http,
            http.post(
                served.url + "/admin/v1/credentials",
                json={"name": "caller", "key": ours},
                headers={"Authorization": f"Bearer {ADMIN_KEY}"},
            ) as resp,
        ):
            assert resp.status == 201
        page = await browser.new_page()
        watch = Watch(page)
        async with evidence(page, tmp_path):
            await log_in(page, served.url)
            await open_page(page, "Providers")
            await page.get_by_role("button", name="Add provider").click()
            form = page.get_by_role("form", name="New provider")
            await form.get_by_label("Name").fill("mock-b")
            await form.get_by_label("API base URL").fill(slow_upstream + "/v1")
            await form.get_by_label("Models").fill("gpt-4o-mini")
            await form.get_by_role("button", name="Create provider").click()
            row = page.locator("tr[data-provider='mock-b']")
            await row.wait_for()

            # Edit: weight and a timeout; a bad value is refused with the field named.
            await page.get_by_role("button", name="Edit mock-b").click()
            form = page.get_by_role("form", name="Edit provider mock-b")
            await form.get_by_label("Other settings (JSON)").fill("{not json")
            await form.get_by_role("button", name="Save").click()
            await form.get_by_text("Other settings: not valid JSON").wait_for()
            await form.get_by_label("Other settings (JSON)").fill("")
            await form.get_by_label("Weight").fill("7")
            await form.get_by_label("Models").fill("gpt-(4")  # a regex that does not compile
            await form.get_by_role("button", name="Save").click()
            await form.get_by_role("alert").filter(has_text="model_mapping").wait_for()
            await form.get_by_label("Models").fill("gpt-4o-mini")
            await form.get_by_label("Connect timeout (s)").fill("2.5")
            await form.get_by_role("button", name="Save").click()
            await page.get_by_text(re.compile(r"Saved provider mock-b")).wait_for()
            await row.locator("td.num", has_text="7").wait_for()  # the list, reloaded

            # Disable: the proxy stops serving the model; enable: it serves it again.
            await page.get_by_role("button", name="Disable mock-b").click()
            await page.get_by_text(re.compile(r"Disabled mock-b")).wait_for()
            await row.filter(has_text="disabled").wait_for()
            assert await chat_status(served.url, ours) == 404
            await page.get_by_role("button", name="Enable mock-b").click()
            await page.get_by_text(re.compile(r"Enabled mock-b")).wait_for()
            assert await chat_status(served.url, ours) == 200

            # Keys: create, rotate (the old key stops, the new one works), disable, delete.
            await open_page(page, "Keys")
            await page.get_by_role("button", name="Create key").click()
            form = page.get_by_role("form", name="New key")
            await form.get_by_label("Name").fill("team-edit")
            await form.get_by_label("Allowed models").fill("gpt-4o-mini")
            await form.get_by_role("button", name="Create key").click()
            first = await page.get_by_label("Key (shown once)").input_value()
            assert await chat_status(served.url, first) == 200
            await page.get_by_role("button", name="Rotate team-edit").click()
            await page.get_by_role("dialog").get_by_role("button", name="Rotate").click()
            await page.get_by_role("heading", name="Rotated key team-edit").wait_for()
            second = await page.get_by_label("Key (shown once)").input_value()
            assert second != first
            assert await chat_status(served.url, first) == 401
            assert await chat_status(served.url, second) == 200
            await page.get_by_role("button", name="Edit team-edit").click()
            form = page.get_by_role("form", name="Edit key team-edit")
            assert await form.get_by_label("Allowed models").input_value() == "gpt-4o-mini"
            assert await form.get_by_label("Stored objects").input_value() == "false"
            await form.get_by_label("Tokens per minute").fill("5000")
            await form.get_by_label("Stored objects").select_option("true")
            await form.get_by_role("button", name="Save").click()
            key_row = page.locator("tr[data-key='team-edit']")
            await key_row.filter(has_text="5,000 tok/min").wait_for()
            await key_row.filter(has_text="all objects").wait_for()
            await page.get_by_role("button", name="Disable team-edit").click()
            await key_row.filter(has_text="disabled").wait_for()
            assert await chat_status(served.url, second) == 401
            await page.get_by_role("button", name="Delete team-edit").click()
            await page.get_by_role("dialog").get_by_role("button", name="Delete").click()
            await page.get_by_text("Deleted team-edit").wait_for()
            await key_row.wait_for(state="detached")

            # History: the edit as a before/after diff of exactly the fields changed.
            await open_page(page, "History")
            edit = page.locator("li.change", has_text="provider mock-b changed").last
            await edit.wait_for()
            diff = await edit.locator("table.diff").inner_text()
            assert re.search(r"weight\s+1\s+7", diff)
            assert "connect_timeout_secs" in diff and "2.5" in diff
            await checkpoint(page, "history-edit")

            # Delete the provider (confirmed): gone from the page and from the proxy.
            await open_page(page, "Providers")
            await page.get_by_role("button", name="Delete mock-b").click()
            await page.get_by_role("dialog").get_by_role("button", name="Delete").click()
            await page.get_by_text("No providers yet.").wait_for()
            assert await chat_status(served.url, ours) == 404
        watch.check()


async def admin_call(url: str, method: str, path: str, body: Any = None) -> Any:
    """One admin API call with the admin key; its JSON answer (a 2xx asserted)."""
    async with (
        aiohttp.ClientSession(headers={"Authorization": f"Bearer {ADMIN_KEY}"}) as http,
        http.request(method, url + "/admin/v1" + path, json=body) as resp,
    ):
        assert resp.status < 300, await resp.text()
        return await resp.json()


async def stored_mapping(config_dsn: str, name: str) -> str:
    """A provider's model_mapping as the database holds it (jsonb as text)."""
    import asyncpg

    conn = await asyncpg.connect(config_dsn)
    try:
        text = await conn.fetchval(
            "SELECT model_mapping::text FROM providers WHERE name = $1", name
        )
    finally:
        await conn.close()
    assert isinstance(text, str)
    return text


async def upstream_model(url: str, key: str, model: str) -> str:
    """The model name the upstream was sent for a chat call of `model` (the fake echoes it)."""

    client = sdk(url, key)
    try:
        answer = await client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": "hi"}]
        )
    finally:
        await client.close()
    return answer.model


# Every kind of mapping the API accepts: exact names (the same name, another name, a null
# target), a wildcard with a null target and with a target, a regex.
EVERY_KIND = {
    "gpt-4o-mini": "gpt-4o-mini",
    "fast": "gpt-4o-mini",
    "local-model": None,
    "gpt-4.1*": None,
    "gpt-5*": "gpt-5-2025-08-07",
    "claude-(opus|sonnet)-4.*": "claude-sonnet-4-5",
}


@needs_browser
async def test_editing_a_provider_keeps_its_model_mapping(
    browser: Any, slow_upstream: str, config_dsn: str, tmp_path: Path
) -> None:
    """Saving a provider after changing only its weight stores its model mapping byte for
    byte as it was (null targets, wildcards and regexes included), and a deliberate edit of
    the Models field can express every kind."""
    env = {"DB_URL": config_dsn, "ADMIN_KEY": ADMIN_KEY}
    async with serve_process(SETTINGS, tmp_path, env) as served:
        ours = "sk-ui-test-caller-0123456789"
        await admin_call(served.url, "POST", "/credentials", {"name": "caller", "key": ours})
        body = {"name": "kinds", "api_base": slow_upstream + "/v1", "model_mapping": EVERY_KIND}
        await admin_call(served.url, "POST", "/providers", body)
        before = await stored_mapping(config_dsn, "kinds")
        page = await browser.new_page()
        watch = Watch(page)
        async with evidence(page, tmp_path):
            await log_in(page, served.url)
            await open_page(page, "Providers")
            await page.get_by_role("button", name="Edit kinds").click()
            form = page.get_by_role("form", name="Edit provider kinds")
            shown = (await form.get_by_label("Models").input_value()).splitlines()
            assert sorted(shown) == sorted(
                [
                    "gpt-4o-mini = gpt-4o-mini",
                    "fast = gpt-4o-mini",
                    "local-model",
                    "gpt-4.1*",
                    "gpt-5* = gpt-5-2025-08-07",
                    "claude-(opus|sonnet)-4.* = claude-sonnet-4-5",
                ]
            )
            # The hint names settings that exist (Azure's version is a query parameter).
            hint = await form.locator(
                "#"
                + await form.get_by_label("Other settings (JSON)").get_attribute("aria-describedby")
            ).inner_text()
            assert "api_version" not in hint and '"query_params": {"api-version"' in hint
            await form.get_by_label("Weight").fill("5")
            await form.get_by_role("button", name="Save").click()
            await page.get_by_text(re.compile(r"Saved provider kinds")).wait_for()
            assert await stored_mapping(config_dsn, "kinds") == before
            provider = (await admin_call(served.url, "GET", "/providers"))["data"][0]
            assert (provider["weight"], provider["model_mapping"]) == (5, EVERY_KIND)
            # The proxy follows: each kind reaches the upstream under the right name.
            assert await upstream_model(served.url, ours, "gpt-4.1-mini") == "gpt-4.1-mini"
            assert await upstream_model(served.url, ours, "gpt-5-mini") == "gpt-5-2025-08-07"
            assert await upstream_model(served.url, ours, "claude-opus-4-1") == "claude-sonnet-4-5"
            assert await upstream_model(served.url, ours, "local-model") == "local-model"
            assert await upstream_model(served.url, ours, "fast") == "gpt-4o-mini"

            # A deliberate edit: a line without `=` (or with `= ~`) forwards the name as asked.
            await page.get_by_role("button", name="Edit kinds").click()
            form = page.get_by_role("form", name="Edit provider kinds")
            await form.get_by_label("Models").fill(
                "gpt-4.1*\nnull-too = ~\nsame = same\nfast=gpt-4o\n"
                "gpt-5* = gpt-5-2025-08-07\nclaude-(opus|sonnet)-4.* = claude-sonnet-4-5"
            )
            await form.get_by_role("button", name="Save").click()
            # (The first save's "Saved provider kinds" may still be shown: wait for the form to
            # close, then for the stored mapping.)
            await form.wait_for(state="detached")
            edited = {
                "gpt-4.1*": None,
                "null-too": None,
                "same": "same",
                "fast": "gpt-4o",
                "gpt-5*": "gpt-5-2025-08-07",
                "claude-(opus|sonnet)-4.*": "claude-sonnet-4-5",
            }

            async def stored() -> bool:
                provider = (await admin_call(served.url, "GET", "/providers"))["data"][0]
                return bool(provider["model_mapping"] == edited)

            await eventually(stored, what="the edited mapping stored")
            # A line the editor cannot read is refused in the form, nothing is sent.
            await page.get_by_role("button", name="Edit kinds").click()
            form = page.get_by_role("form", name="Edit provider kinds")
            await form.get_by_label("Models").fill("a = b\na = c")
            await form.get_by_role("button", name="Save").click()
            await form.get_by_role("alert").filter(has_text="Models, line 2").wait_for()
            await form.get_by_label("Models").fill("a =")
            await form.get_by_role("button", name="Save").click()
            await form.get_by_role("alert").filter(has_text="Models, line 1").wait_for()
            provider = (await admin_call(served.url, "GET", "/providers"))["data"][0]
            assert provider["model_mapping"]["fast"] == "gpt-4o"
        watch.check()


@needs_browser
async def test_history_shows_a_rollback_as_field_changes(
    browser: Any, slow_upstream: str, config_dsn: str, tmp_path: Path
) -> None:
    """A rollback that puts back a provider's weight shows in History as that provider
    changed, weight 7 → 1, like an edit (the database restores it by deleting and
    re-inserting the row)."""
    env = {"DB_URL": config_dsn, "ADMIN_KEY": ADMIN_KEY}
    async with serve_process(SETTINGS, tmp_path, env) as served:
        body = {"name": "rolled", "api_base": slow_upstream + "/v1", "model_mapping": {"m": None}}
        created = await admin_call(served.url, "POST", "/providers", body)
        edited = await admin_call(served.url, "PATCH", f"/providers/{created['id']}", {"weight": 7})
        version = edited["config_version"]
        page = await browser.new_page()
        watch = Watch(page)
        async with evidence(page, tmp_path):
            await log_in(page, served.url)
            await open_page(page, "History")
            edit = page.locator(f"li.change[data-version='{version}']")
            await edit.get_by_role("button", name=f"Roll back version {version}").click()
            await page.get_by_role("dialog").get_by_role("button", name="Roll back").click()
            done = page.get_by_text(re.compile(rf"Rolled back to version {version - 1}"))
            await done.wait_for()
            rolled = page.locator(f"li.change[data-version='{version + 1}']")
            await rolled.wait_for()
            text = await rolled.inner_text()
            assert "provider rolled changed" in text
            assert "deleted" not in text and "created" not in text
            diff = rolled.locator("table.diff")
            assert await diff.count() == 1
            fields = diff.locator("tbody tr")
            assert await fields.count() == 1  # the weight, and nothing else
            assert re.fullmatch(r"weight\s+7\s+1", await fields.inner_text())
            # The API says so too: one UPDATE of the weight.
            answer = await admin_call(served.url, "GET", f"/config/history/{version + 1}")
            changes = [(c["operation"], c["fields_changed"]) for c in answer["changes"]]
            assert changes == [("UPDATE", ["weight"])]
        watch.check()


@needs_browser
async def test_an_anthropic_provider_from_the_form(
    browser: Any, slow_upstream: str, config_dsn: str, tmp_path: Path
) -> None:
    """The type decides the form: anthropic's settings are shown (and sent) for that type
    only, its base URL may be left empty (Anthropic's own), its key goes in x-api-key unless
    "Key sent as" says otherwise; switching the type away drops its settings."""
    env = {"DB_URL": config_dsn, "ADMIN_KEY": ADMIN_KEY}
    async with serve_process(SETTINGS, tmp_path, env) as served:
        page = await browser.new_page()
        watch = Watch(page)
        async with evidence(page, tmp_path):
            await log_in(page, served.url)
            await open_page(page, "Providers")
            await page.get_by_role("button", name="Add provider").click()
            form = page.get_by_role("form", name="New provider")
            anthropic_version = form.get_by_label("Anthropic version")
            auth = form.get_by_label("Key sent as")
            assert not await anthropic_version.is_visible()  # openai: not meaningful
            assert await auth.locator("option").first.inner_text() == "Type default: Bearer"
            assert await form.get_by_label("API base URL").get_attribute("required") == ""
            await form.get_by_label("Type").select_option("anthropic")
            await anthropic_version.wait_for()
            assert await auth.locator("option").first.inner_text() == "Type default: x-api-key"
            assert await form.get_by_label("API base URL").get_attribute("required") is None
            await assert_labelled(page)
            await form.get_by_label("Name").fill("claude")
            await form.get_by_label("API key").fill("sk-ant-ui-test-0123456789")
            await form.get_by_label("Models").fill("claude-sonnet = claude-sonnet-4-5")
            await anthropic_version.fill("2024-10-22")
            await form.get_by_label("Max output tokens").fill("2048")
            await form.get_by_role("button", name="Create provider").click()
            await page.get_by_text(re.compile(r"Created provider claude")).wait_for()
            row = page.locator("tr[data-provider='claude']")
            await row.filter(has_text="https://api.anthropic.com").wait_for()
            (stored,) = (await admin_call(served.url, "GET", "/providers"))["data"]
            assert (stored["provider_type"], stored["api_base"]) == (
                "anthropic",
                "https://api.anthropic.com",
            )
            # Only what was filled in: the type's auth and the default max_tokens are the
            # server's to choose.
            assert stored["params"] == {
                "anthropic_version": "2024-10-22",
                "max_output_tokens": 2048,
            }

            # Edit: the fields show what is stored; a key header chosen and a default set.
            await page.get_by_role("button", name="Edit claude").click()
            form = page.get_by_role("form", name="Edit provider claude")
            assert await form.get_by_label("Anthropic version").input_value() == "2024-10-22"
            assert await form.get_by_label("Max output tokens").input_value() == "2048"
            assert await form.get_by_label("Other settings (JSON)").input_value() == ""
            assert await form.get_by_label("Key sent as").input_value() == ""
            await checkpoint(page, "provider-form-anthropic")  # legible and labelled
            await form.get_by_label("Key sent as").select_option("bearer")
            await form.get_by_label("Default max tokens").fill("1024")
            await form.get_by_role("button", name="Save").click()
            # (The flash of an earlier save reads the same: the form closing is this one's.)
            await form.wait_for(state="detached")
            await page.get_by_text(re.compile(r"Saved provider claude")).wait_for()
            (stored,) = (await admin_call(served.url, "GET", "/providers"))["data"]
            assert stored["params"] == {
                "anthropic_version": "2024-10-22",
                "max_output_tokens": 2048,
                "default_max_tokens": 1024,
                "auth": "bearer",
            }

            # Another type: Anthropic's settings are hidden and dropped.
            await page.get_by_role("button", name="Edit claude").click()
            form = page.get_by_role("form", name="Edit provider claude")
            await form.get_by_label("Type").select_option("openai")
            await form.get_by_label("Anthropic version").wait_for(state="hidden")
            await form.get_by_label("API base URL").fill(slow_upstream + "/v1")
            await form.get_by_role("button", name="Save").click()
            # (The flash of an earlier save reads the same: the form closing is this one's.)
            await form.wait_for(state="detached")
            await page.get_by_text(re.compile(r"Saved provider claude")).wait_for()
            (stored,) = (await admin_call(served.url, "GET", "/providers"))["data"]
            assert (stored["provider_type"], stored["params"]) == ("openai", {"auth": "bearer"})
        watch.check()


@needs_browser
async def test_a_bedrock_provider_from_the_form(
    browser: Any, slow_upstream: str, config_dsn: str, tmp_path: Path
) -> None:
    """The cloud types decide the form: bedrock shows its region and AWS credentials (the
    secrets as password inputs) and hides the API key and "Key sent as"; its base URL may be
    left empty (the region's endpoint). Saved again, edited as shown, the masked secrets keep
    the stored ones and nothing else changes; vertex shows its own fields instead."""
    key_id, secret = "AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
    env = {"DB_URL": config_dsn, "ADMIN_KEY": ADMIN_KEY}
    async with serve_process(SETTINGS, tmp_path, env) as served:
        page = await browser.new_page()
        watch = Watch(page)
        async with evidence(page, tmp_path):
            await log_in(page, served.url)
            await open_page(page, "Providers")
            await page.get_by_role("button", name="Add provider").click()
            form = page.get_by_role("form", name="New provider")
            region = form.get_by_label("AWS region")
            assert not await region.is_visible()  # openai: not meaningful
            await form.get_by_label("Type").select_option("bedrock")
            await region.wait_for()
            assert not await form.get_by_label("API key").is_visible()
            assert not await form.get_by_label("Key sent as").is_visible()
            assert not await form.get_by_label("Google Cloud project").is_visible()
            assert await form.get_by_label("API base URL").get_attribute("required") is None
            for label in ("AWS access key id", "AWS secret access key", "AWS session token"):
                assert await form.get_by_label(label).get_attribute("type") == "password"
            await assert_labelled(page)
            await form.get_by_label("Name").fill("bedrock")
            await form.get_by_label("Models").fill(
                "claude = us.anthropic.claude-3-7-sonnet-20250219-v1:0"
            )
            await region.fill("eu-central-1")
            await form.get_by_label("AWS access key id").fill(key_id)
            await form.get_by_label("AWS secret access key").fill(secret)
            await form.get_by_label("Request timeout (s)").fill("300")
            await form.get_by_role("button", name="Create provider").click()
            await page.get_by_text(re.compile(r"Created provider bedrock")).wait_for()
            base = "https://bedrock-runtime.eu-central-1.amazonaws.com"
            await page.locator("tr[data-provider='bedrock']").filter(has_text=base).wait_for()
            (stored,) = (await admin_call(served.url, "GET", "/providers"))["data"]
            assert (stored["provider_type"], stored["api_base"], stored["api_key"]) == (
                "bedrock",
                base,
                "",
            )
            assert stored["params"] == {
                "region": "eu-central-1",
                "aws_access_key_id": "AKI...MPLE",
                "aws_secret_access_key": "wJa...EKEY",
                "request_timeout_secs": 300,
            }
            assert stored["model_mapping"] == {
                "claude": "us.anthropic.claude-3-7-sonnet-20250219-v1:0"
            }

            # Edit: the stored (masked) values shown; change the weight alone and save.
            await page.get_by_role("button", name="Edit bedrock").click()
            form = page.get_by_role("form", name="Edit provider bedrock")
            assert await form.get_by_label("AWS region").input_value() == "eu-central-1"
            assert await form.get_by_label("AWS secret access key").input_value() == "wJa...EKEY"
            assert await form.get_by_label("API base URL").input_value() == ""  # the default
            assert await form.get_by_label("Other settings (JSON)").input_value() == ""
            await checkpoint(page, "provider-form-bedrock")
            await form.get_by_label("Weight").fill("2")
            await form.get_by_role("button", name="Save").click()
            await form.wait_for(state="detached")
            await page.get_by_text(re.compile(r"Saved provider bedrock")).wait_for()
            # Then the region: the endpoint follows it, the secrets are kept.
            await page.get_by_role("button", name="Edit bedrock").click()
            form = page.get_by_role("form", name="Edit provider bedrock")
            await form.get_by_label("AWS region").fill("us-west-2")
            await form.get_by_role("button", name="Save").click()
            await form.wait_for(state="detached")
            (stored,) = (await admin_call(served.url, "GET", "/providers"))["data"]
            assert (stored["weight"], stored["api_base"]) == (
                2,
                "https://bedrock-runtime.us-west-2.amazonaws.com",
            )
            assert stored["params"] == {
                "region": "us-west-2",
                "aws_access_key_id": "AKI...MPLE",
                "aws_secret_access_key": "wJa...EKEY",
                "request_timeout_secs": 300,
            }
            async with (
                aiohttp.ClientSession(headers={"Authorization": f"Bearer {ADMIN_KEY}"}) as http,
                http.get(served.url + "/admin/v1/config/export") as resp,
            ):
                exported = await resp.text()
            assert key_id not in exported and secret not in exported

            # Vertex: its own fields, the AWS ones hidden.
            await page.get_by_role("button", name="Add provider").click()
            form = page.get_by_role("form", name="New provider")
            await form.get_by_label("Type").select_option("vertex")
            await form.get_by_label("Google Cloud project").wait_for()
            assert not await form.get_by_label("AWS region").is_visible()
            assert await form.get_by_label("Credentials JSON").get_attribute("type") == "password"
            assert await form.get_by_label("API base URL").get_attribute("placeholder") == (
                "https://aiplatform.googleapis.com"
            )
            await form.get_by_label("Location").fill("us-east5")
            assert await form.get_by_label("API base URL").get_attribute("placeholder") == (
                "https://us-east5-aiplatform.googleapis.com"
            )
        watch.check()
