"""Live stats for the admin UI (`GET /admin/v1/stats`), from the proxy's own counters:
requests/s, 5xx rate, latency and TTFT percentiles, tokens/min and cost, overall and per
provider or key, over the last hour."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from llm_proxy.keys import STATS
from llm_proxy.observe.stats import quantile
from tests.helpers import Upstream, make_config, provider, serve

ADMIN = {"Authorization": "Bearer admin-key-0123456789"}


def test_quantiles_interpolate_within_buckets() -> None:
    # DURATION_BUCKETS start 0.005, 0.01, 0.025, ...: 10 observations in (0.005, 0.01].
    buckets = [0] * 18  # 17 bounds, then +Inf
    buckets[1] = 10
    assert quantile(0.5, buckets) == pytest.approx(0.0075)
    assert quantile(1.0, buckets) == pytest.approx(0.01)
    assert quantile(0.5, [0] * 18) is None
    over = [0] * 17 + [4]  # all above the last bound: its value, as Prometheus reports
    assert quantile(0.99, over) == 600.0


async def test_stats_by_provider_and_key(upstream: Upstream) -> None:
    from llm_proxy.app import create_app

    config = make_config(
        provider("alpha", upstream.api_base, {"m": None}),
        master_keys=[{"name": "team", "key": "sk-team-0123456789"}],
        admin_key="admin-key-0123456789",
        pricing={"m": {"input_per_mtok": 1, "output_per_mtok": 1}},
    )
    app = create_app(config)
    async with serve(app) as url, aiohttp.ClientSession() as http:
        auth = {"Authorization": "Bearer sk-team-0123456789"}
        for i in range(10):
            body: dict[str, Any] = {"model": "m", "messages": []}
            if i % 5 == 0:
                body["mock_status"] = 500
            async with http.post(url + "/v1/chat/completions", json=body, headers=auth) as r:
                assert r.status in (200, 500)
        app[STATS].sample()
        async with http.get(url + "/admin/v1/stats?by=provider&window=60", headers=ADMIN) as r:
            assert r.status == 200
            stats = await r.json()
        assert stats["providers"] == [
            {"name": "alpha", "healthy": True, "state": "healthy", "rate_limited_for_secs": 0.0}
        ]
        assert set(stats["series"]) == {"all", "alpha"}
        step = stats["series"]["all"][0]  # the step from startup to the sample above
        assert step["requests_per_sec"] > 0 and step["error_rate"] == pytest.approx(0.2)
        steps = stats["series"]["all"]
        assert all(s["secs"] > 0 for s in steps)
        assert sum(s["requests"] for s in steps) == 10 and sum(s["errors"] for s in steps) == 2
        assert step["p50_ms"] is not None and step["p99_ms"] >= step["p50_ms"]
        assert step["tokens_per_min"] > 0 and step["cost_usd"] > 0
        alpha = stats["series"]["alpha"][0]
        assert alpha["requests_per_sec"] == step["requests_per_sec"]
        async with http.get(url + "/admin/v1/stats?by=key", headers=ADMIN) as r:
            assert set((await r.json())["series"]) == {"all", "team"}
        for query in ("by=model", "window=5", "window=99999"):
            async with http.get(url + f"/admin/v1/stats?{query}", headers=ADMIN) as r:
                assert r.status == 400
        async with http.get(url + "/admin/v1/stats") as r:
            assert r.status == 401


async def test_stats_by_team(upstream: Upstream) -> None:
    """`?by=team`: a team's line counts its keys' requests, tokens and cost; a key in no
    team counts in `all` only."""
    from llm_proxy.app import create_app

    config = make_config(
        provider("alpha", upstream.api_base, {"m": None}),
        teams=[{"name": "search"}, {"name": "idle"}],
        master_keys=[
            {"name": "ann", "key": "sk-ann-0123456789", "team": "search"},
            {"name": "ben", "key": "sk-ben-0123456789", "team": "search"},
            {"name": "out", "key": "sk-out-0123456789"},
        ],
        admin_key="admin-key-0123456789",
        pricing={"m": {"input_per_mtok": 1, "output_per_mtok": 1}},
    )
    app = create_app(config)
    async with serve(app) as url, aiohttp.ClientSession() as http:
        for key, times in (("ann", 3), ("ben", 2), ("out", 4)):
            auth = {"Authorization": f"Bearer sk-{key}-0123456789"}
            for _ in range(times):
                body = {"model": "m", "messages": []}
                async with http.post(url + "/v1/chat/completions", json=body, headers=auth) as r:
                    assert r.status == 200
        async with http.get(url + "/admin/v1/stats?by=team&window=60", headers=ADMIN) as r:
            assert r.status == 200
            series = (await r.json())["series"]
        assert set(series) == {"all", "search"}  # `idle` served nothing; `out` is in none
        assert sum(s["requests"] for s in series["search"]) == 5
        assert sum(s["requests"] for s in series["all"]) == 9
        assert sum(s["cost_usd"] for s in series["search"]) > 0
        assert sum(s["tokens_per_min"] * s["secs"] for s in series["search"]) > 0
