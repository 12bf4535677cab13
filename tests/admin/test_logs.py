"""The request log through the admin API: filters, newest-first cursor paging, a request's
detail with its failed attempts, the usage sums, and the errors of each."""

from __future__ import annotations

import base64
import time
from typing import Any

import aiohttp
import openai
import pytest

from llm_proxy.config.model import RequestLogSettings
from llm_proxy.observe.records import RequestRecord
from llm_proxy.observe.request_log import DatabaseLog
from tests.helpers import ProxyFactory, Upstream, eventually, free_port, make_config, provider, sdk

ADMIN = {"Authorization": "Bearer admin-key-0123456789"}
TEAMS = [{"name": "search", "max_budget_usd": 5}]
KEYS = [
    {"name": "team-a", "key": "sk-team-a-0123456789", "team": "search"},
    {"name": "team-b", "key": "sk-team-b-0123456789"},
]
PRICING = {"m1": {"input_per_mtok": 1.0, "output_per_mtok": 2.0}}


async def get(http: aiohttp.ClientSession, url: str, **params: Any) -> tuple[int, Any]:
    async with http.get(url, params=params, headers=ADMIN) as resp:
        return resp.status, await resp.json()


@pytest.fixture
async def logged(
    upstream: Upstream, start_proxy: ProxyFactory, config_dsn: str, http: aiohttp.ClientSession
) -> str:
    """A proxy whose request log holds: team-a (of team `search`) 3 x m1 (ok), team-b (in no
    team) 2 x m2 (ok), team-b 1 x m1 failed over from a dead provider, 1 unknown model
    (404)."""
    dead = free_port()
    url = await start_proxy(
        make_config(
            provider("up", upstream.api_base, {"m1": None, "m2": None}),
            provider("down", f"http://127.0.0.1:{dead}/v1", {"m1": None}),
            teams=TEAMS,
            master_keys=KEYS,
            admin_key="admin-key-0123456789",
            pricing=PRICING,
            request_log={"database_url": config_dsn, "flush_interval_secs": 0.05},
        )
    )
    calls = [("sk-team-a-0123456789", "m1")] * 3 + [("sk-team-b-0123456789", "m2")] * 2
    calls += [("sk-team-b-0123456789", "m1"), ("sk-team-b-0123456789", "nope")]
    for key, model in calls:
        async with sdk(url, key) as c:
            try:
                await c.chat.completions.create(
                    model=model, messages=[{"role": "user", "content": "hi"}]
                )
            except openai.NotFoundError:
                assert model == "nope"

    async def all_logged() -> bool:
        status, page = await get(http, url + "/admin/v1/logs/requests", limit="200")
        return status == 200 and len(page["data"]) == len(calls)

    await eventually(all_logged, timeout=10, interval=0.05, what=f"{len(calls)} requests logged")
    return url


async def test_requests_newest_first_with_filters(logged: str, http: aiohttp.ClientSession) -> None:
    status, page = await get(http, logged + "/admin/v1/logs/requests")
    assert status == 200 and page["next_cursor"] is None
    rows = page["data"]
    assert len(rows) == 7
    times = [r["ts"] for r in rows]
    assert times == sorted(times, reverse=True) and times[0].endswith("Z")
    assert rows[0]["model"] == "nope" and rows[0]["status"] == 404
    assert rows[0]["error_code"] == "model_not_found"

    _, a = await get(http, logged + "/admin/v1/logs/requests", key="team-a")
    assert [(r["key_name"], r["model"]) for r in a["data"]] == [("team-a", "m1")] * 3
    _, m2 = await get(http, logged + "/admin/v1/logs/requests", model="m2")
    assert {r["key_name"] for r in m2["data"]} == {"team-b"} and len(m2["data"]) == 2
    _, failed = await get(http, logged + "/admin/v1/logs/requests", status="4xx")
    assert [r["status"] for r in failed["data"]] == [404]
    _, errors = await get(http, logged + "/admin/v1/logs/requests", status="error")
    assert len(errors["data"]) == 1
    _, ok = await get(http, logged + "/admin/v1/logs/requests", status="200", provider="up")
    assert len(ok["data"]) == 6
    rid = rows[3]["request_id"]
    _, one = await get(http, logged + "/admin/v1/logs/requests", request_id=rid)
    assert [r["request_id"] for r in one["data"]] == [rid]
    future = "2999-01-01T00:00:00Z"
    _, none = await get(http, logged + "/admin/v1/logs/requests", since=future)
    assert none["data"] == []
    _, everything = await get(
        http, logged + "/admin/v1/logs/requests", since="2020-01-01", until=future
    )
    assert len(everything["data"]) == 7


async def test_cursor_paging_walks_every_row_once(logged: str, http: aiohttp.ClientSession) -> None:
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        params = {"limit": "2", **({"cursor": cursor} if cursor else {})}
        status, page = await get(http, logged + "/admin/v1/logs/requests", **params)
        assert status == 200
        seen += [r["request_id"] for r in page["data"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == 4 and len(seen) == 7 and len(set(seen)) == 7


async def test_a_request_with_its_failed_attempts(logged: str, http: aiohttp.ClientSession) -> None:
    _, page = await get(http, logged + "/admin/v1/logs/errors")
    assert len(page["data"]) >= 1
    error = page["data"][0]
    assert (error["provider"], error["outcome"]) == ("down", "connect_error")
    status, detail = await get(http, logged + f"/admin/v1/logs/requests/{error['request_id']}")
    assert status == 200
    (req,) = detail["data"]
    assert req["attempts"] == ["down", "up"] and req["status"] == 200
    assert [e["outcome"] for e in detail["errors"]] == ["connect_error"]
    _, by_provider = await get(http, logged + "/admin/v1/logs/errors", provider="up")
    assert by_provider["data"] == []
    _, by_outcome = await get(http, logged + "/admin/v1/logs/errors", outcome="connect_error")
    assert len(by_outcome["data"]) == len(page["data"])
    status, missing = await get(http, logged + "/admin/v1/logs/requests/no-such-id")
    assert status == 404 and missing["error"]["code"] == "request_not_found"


async def test_usage_by_key_model_and_day(logged: str, http: aiohttp.ClientSession) -> None:
    status, usage = await get(http, logged + "/admin/v1/usage", group_by="key,model")
    assert status == 200
    by = {(u["key"], u["model"]): u for u in usage["data"]}
    assert by[("team-a", "m1")]["requests"] == 3
    assert by[("team-a", "m1")]["cost_usd"] > 0  # m1 is priced
    assert by[("team-b", "m2")]["requests"] == 2 and by[("team-b", "m2")]["cost_usd"] == 0
    assert by[("team-b", "")]["errors"] == 1 and by[("team-b", "")]["error_rate"] == 1.0
    assert usage["total"]["requests"] == 7 and usage["total"]["errors"] == 1
    assert usage["truncated"] is False
    assert usage["total"]["total_tokens"] == sum(u["total_tokens"] for u in usage["data"])
    assert usage["data"][0]["cost_usd"] >= usage["data"][-1]["cost_usd"]  # costliest first

    _, days = await get(http, logged + "/admin/v1/usage", group_by="day")
    (today,) = days["data"]
    assert today["requests"] == 7 and today["day"] == days["until"]
    _, filtered = await get(http, logged + "/admin/v1/usage", group_by="provider", key="team-b")
    assert {u["provider"]: u["requests"] for u in filtered["data"]} == {"up": 3, "none": 1}
    _, past = await get(http, logged + "/admin/v1/usage", since="2020-01-01", until="2020-01-31")
    assert past["data"] == [] and past["total"]["requests"] == 0
    status, first_days = await get(http, logged + "/admin/v1/usage", until="0001-01-05")
    assert status == 200 and first_days["since"] == "0001-01-01"


async def test_requests_and_usage_by_team(logged: str, http: aiohttp.ClientSession) -> None:
    """Each row names its key's team (null: none); `?team=` keeps a team's requests, and
    usage sums by team (`group_by=team`, null for keys in none) or for one (`team=`)."""
    _, page = await get(http, logged + "/admin/v1/logs/requests")
    assert {(r["key_name"], r["team"]) for r in page["data"]} == {
        ("team-a", "search"),
        ("team-b", None),
    }
    _, search = await get(http, logged + "/admin/v1/logs/requests", team="search")
    assert [(r["key_name"], r["team"]) for r in search["data"]] == [("team-a", "search")] * 3
    _, nobody = await get(http, logged + "/admin/v1/logs/requests", team="team-b")
    assert nobody["data"] == []

    status, usage = await get(http, logged + "/admin/v1/usage", group_by="team")
    assert status == 200 and usage["group_by"] == ["team"]
    by = {u["team"]: u for u in usage["data"]}
    assert set(by) == {"search", None}
    assert by["search"]["requests"] == 3 and by["search"]["cost_usd"] > 0
    assert by[None]["requests"] == 4 and by[None]["errors"] == 1
    _, keys = await get(http, logged + "/admin/v1/usage", group_by="team,key", team="search")
    assert [(u["team"], u["key"], u["requests"]) for u in keys["data"]] == [("search", "team-a", 3)]
    assert keys["total"]["requests"] == 3
    assert keys["total"]["cost_usd"] == by["search"]["cost_usd"]


def cursor_of(seconds: str, row_id: int) -> str:
    """A cursor as the API encodes one (base64 of `seconds:id`), with any values."""
    return base64.urlsafe_b64encode(f"{seconds}:{row_id}".encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    ("path", "params", "param"),
    [
        ("/logs/requests", {"since": "yesterday"}, "since"),
        ("/logs/requests", {"limit": "0"}, "limit"),
        ("/logs/requests", {"limit": "201"}, "limit"),
        ("/logs/requests", {"cursor": "not-a-cursor"}, "cursor"),
        # Row ids beyond PostgreSQL's bigint (or below 1) are no cursor this API returned.
        ("/logs/requests", {"cursor": cursor_of("1700000000.0", 2**63)}, "cursor"),
        ("/logs/errors", {"cursor": cursor_of("1700000000.0", 10**30)}, "cursor"),
        ("/logs/requests", {"cursor": cursor_of("1700000000.0", -1)}, "cursor"),
        ("/logs/requests", {"cursor": cursor_of("1e300", 5)}, "cursor"),
        ("/logs/requests", {"cursor": cursor_of("nan", 5)}, "cursor"),
        ("/logs/requests", {"status": str(2**63)}, "status"),
        ("/logs/requests", {"limit": str(2**64)}, "limit"),
        ("/logs/requests", {"since": str(2**63)}, "since"),
        ("/logs/requests", {"status": "6xx"}, "status"),
        ("/logs/requests", {"key": "k" * 1001}, "key"),
        ("/logs/requests", {"model": "a\x00b"}, "model"),
        ("/logs/requests/a%00b", {}, "request_id"),
        ("/logs/errors", {"until": "2026-13-45"}, "until"),
        ("/usage", {"group_by": "key,colour"}, "group_by"),
        ("/usage", {"group_by": "key,key"}, "group_by"),
        ("/usage", {"since": "2026-02-01", "until": "2026-01-01"}, "since"),
        ("/usage", {"since": "01/02/2026"}, "since"),
    ],
)
async def test_bad_parameters_are_400_naming_the_parameter(
    logged: str, http: aiohttp.ClientSession, path: str, params: dict[str, str], param: str
) -> None:
    status, body = await get(http, logged + "/admin/v1" + path, **params)
    assert status == 400
    assert body["error"]["param"] == param and body["error"]["message"]


async def test_admin_key_required_and_file_only_log_is_409(
    logged: str,
    upstream: Upstream,
    start_proxy: ProxyFactory,
    http: aiohttp.ClientSession,
) -> None:
    async with http.get(logged + "/admin/v1/logs/requests") as resp:
        assert resp.status == 401
    async with http.get(
        logged + "/admin/v1/usage", headers={"Authorization": "Bearer sk-team-a-0123456789"}
    ) as resp:
        assert resp.status == 401  # a master key is not an admin key
    url = await start_proxy(
        make_config(
            provider("up", upstream.api_base, {"m1": None}), admin_key="admin-key-0123456789"
        )
    )
    for path in ("/logs/requests", "/logs/errors", "/usage", "/logs/requests/x"):
        status, body = await get(http, url + "/admin/v1" + path)
        assert status == 409 and body["error"]["code"] == "request_log_disabled"


async def test_an_unreachable_log_database_is_503(
    upstream: Upstream, start_proxy: ProxyFactory, http: aiohttp.ClientSession
) -> None:
    url = await start_proxy(
        make_config(
            provider("up", upstream.api_base, {"m1": None}),
            admin_key="admin-key-0123456789",
            request_log={"database_url": f"postgresql://postgres@127.0.0.1:{free_port()}/x"},
        )
    )
    status, body = await get(http, url + "/admin/v1/logs/requests")
    assert status == 503 and body["error"]["code"] == "request_log_unavailable"


async def test_the_originals_log_paths_and_shapes(logged: str, http: aiohttp.ClientSession) -> None:
    """`/logs`, `/logs/stats`, `/logs/{id}`, `/error-logs`, `/error-logs/{id}`: the original
    llm-proxy's paths, parameters and answers, from our log."""
    base = logged + "/admin/v1"
    status, page = await get(http, base + "/logs", page_size="3")
    assert status == 200, page
    assert (page["total"], page["page"], page["page_size"], page["total_pages"]) == (7, 1, 3, 3)
    first = page["items"][0]
    assert (first["model_requested"], first["status_code"]) == ("nope", 404)
    assert first["credential_name"] == "team-b" and first["endpoint"] == "/v1/chat/completions"
    assert first["error_category"] == "model_not_found" and first["timestamp"].endswith("Z")
    _, last = await get(http, base + "/logs", page_size="3", page="3")
    assert len(last["items"]) == 1
    _, oldest = await get(http, base + "/logs", sort_order="asc", page_size="1")
    assert oldest["items"][0]["credential_name"] == "team-a"
    _, a = await get(http, base + "/logs", credential_name="team-a", model="m1")
    assert a["total"] == 3 and {i["input_tokens"] > 0 for i in a["items"]} == {True}
    _, failed = await get(http, base + "/logs", error_only="true")
    assert [i["status_code"] for i in failed["items"]] == [404]
    _, by_status = await get(http, base + "/logs", status_code="200", provider_name="up")
    assert by_status["total"] == 6
    status, detail = await get(http, base + f"/logs/{first['id']}")
    assert status == 200 and detail["id"] == first["id"] and "response_body" in detail
    status, body = await get(http, base + "/logs/999999")
    assert status == 404
    status, stats = await get(http, base + "/logs/stats")
    assert status == 200, stats
    assert (stats["total_requests"], stats["total_errors"]) == (7, 1)
    assert stats["requests_by_model"]["m1"] == 4 and stats["requests_by_status"]["404"] == 1
    assert stats["total_input_tokens"] > 0 and stats["avg_duration_ms"] > 0
    _, m2 = await get(http, base + "/logs/stats", model="m2")
    assert m2["total_requests"] == 2 and m2["error_rate"] == 0.0
    status, errors = await get(http, base + "/error-logs")
    assert status == 200 and errors["total"] >= 1
    attempt = errors["items"][0]
    assert attempt["provider_name"] == "down" and attempt["error_category"]
    status, one = await get(http, base + f"/error-logs/{attempt['id']}")
    assert status == 200 and one["id"] == attempt["id"] and "response_body" in one
    status, body = await get(http, base + "/logs", page_size="201")
    assert status == 400 and body["error"]["param"] == "page_size"


async def test_each_row_says_what_the_cache_did_and_the_cache_filter_keeps_those(
    upstream: Upstream, start_proxy: ProxyFactory, config_dsn: str, http: aiohttp.ClientSession
) -> None:
    url = await start_proxy(
        make_config(
            provider("up", upstream.api_base, {"m1": None}),
            admin_key="admin-key-0123456789",
            request_log={"database_url": config_dsn},
        )
    )
    sink = DatabaseLog(config_dsn, RequestLogSettings())
    await sink.start()
    now = time.time()
    said = ["miss", "hit", "hit", "bypass", None]
    for i, cache in enumerate(said):
        sink.submit(
            RequestRecord(
                now + i, f"r{i}", "team-a", "curl", "POST", "/v1/chat/completions", "m1", "m1",
                "cache" if cache == "hit" else "up", [], 200, 1.0, None, 1, 2, None, False, None,
                cache=cache,
            )
        )  # fmt: skip
    await sink.close()
    logs = url + "/admin/v1/logs/requests"
    _, page = await get(http, logs)
    assert [(r["request_id"], r["cache"], r["provider"]) for r in page["data"]] == [
        ("r4", None, "up"),
        ("r3", "bypass", "up"),
        ("r2", "hit", "cache"),
        ("r1", "hit", "cache"),
        ("r0", "miss", "up"),
    ]
    for value, expected in (("hit", ["r2", "r1"]), ("miss", ["r0"]), ("bypass", ["r3"])):
        _, page = await get(http, logs, cache=value)
        assert [r["request_id"] for r in page["data"]] == expected
    _, page = await get(http, logs, cache="hit", limit="1")
    _, rest = await get(http, logs, cache="hit", cursor=page["next_cursor"])
    assert [r["request_id"] for r in page["data"] + rest["data"]] == ["r2", "r1"]
    _, page = await get(http, logs, cache="")  # empty: no filter, as for the others
    assert len(page["data"]) == 5
    _, detail = await get(http, logs + "/r2")
    assert detail["data"][0]["cache"] == "hit"
    for wrong in ("HIT", "true", "none", "hit,miss"):
        status, body = await get(http, logs, cache=wrong)
        assert status == 400, wrong
        assert (
            body["error"]["param"] == "cache" and "hit, miss or bypass" in body["error"]["message"]
        )
