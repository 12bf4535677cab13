"""The cache benchmark's configs, bodies and judgement (`tests.perf.cache_bench`), without
running it: its configs pass `llm-proxy check-config` and turn the cache on (or leave it off),
the wrk script sends every request a new body (wrk against a loopback server), and the
ratios are held to the issue's bounds only when the cache answered as each scenario needs."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web

from llm_proxy.config.yaml_file import load_config_text
from tests.perf import bench, cache_bench, protocols_bench

SCENARIOS = {s.name: s for s in cache_bench.SCENARIOS}
TAG = re.compile(r"[0-9a-f]{12}-[0-9]+")


def _write(tmp_path: Path, name: str) -> Path:
    path = tmp_path / f"{name}.yaml"
    cache_bench.write_config(path, "http://127.0.0.1:9", 18999, cache_bench.VARIANTS[name][0])
    return path


def test_off_is_the_bench_config_without_a_cache(tmp_path: Path) -> None:
    plain = tmp_path / "plain.yaml"
    bench.write_config(plain, "http://127.0.0.1:9", 18999)
    for name in ("off", "off-unique"):
        text = _write(tmp_path, name).read_text()
        assert text == plain.read_text()
        assert not load_config_text(text, {}).cache.enabled


@pytest.mark.parametrize("name", list(cache_bench.VARIANTS))
def test_every_config_passes_check_config(tmp_path: Path, name: str) -> None:
    path = _write(tmp_path, name)
    env = {**os.environ, "DB_URL": ""}  # YAML mode, as `make check-config` runs it
    done = subprocess.run(
        [sys.executable, "-m", "llm_proxy", "check-config", str(path)],
        capture_output=True, text=True, env=env, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("name", ["hit", "miss"])
def test_the_cache_configs_turn_on_a_memory_cache_that_keeps_the_bench_request(
    tmp_path: Path, name: str
) -> None:
    plain = tmp_path / "plain.yaml"
    bench.write_config(plain, "http://127.0.0.1:9", 18999)
    text = _write(tmp_path, name).read_text()
    assert text.startswith(plain.read_text().rstrip())  # the same config, and a cache
    cache = load_config_text(text, {}).cache
    assert cache.enabled and cache.backend == "memory"
    assert cache.models == ("*",) and "chat/completions" in cache.endpoints
    data = orjson.loads(cache_bench.cacheable(SCENARIOS[name]))
    assert data["model"] == cache_bench.MODEL and "n" not in data
    assert data["temperature"] <= cache.max_temperature  # (without one: 1, never kept)


def test_all_scenarios_make_the_bench_call_at_temperature_0_with_the_same_key() -> None:
    bodies = {cache_bench.cacheable(s) for s in cache_bench.SCENARIOS}
    assert len(bodies) == 1 and {s.key for s in cache_bench.SCENARIOS} == {bench.KEY}
    assert orjson.loads(bodies.pop()) == {**bench.BODY, "temperature": 0}
    assert {s.path() for s in cache_bench.SCENARIOS} == {"/v1/chat/completions"}


def test_a_tag_goes_at_the_end_of_the_text() -> None:
    scenario = SCENARIOS["miss"]
    data = orjson.loads(cache_bench.cacheable(scenario, "ab12-7"))
    message = {"role": "user", "content": "Say hello. ab12-7"}
    assert data == {**bench.BODY, "messages": [message], "temperature": 0}
    supply = cache_bench.unique_bodies(scenario)
    assert len({supply() for _ in range(1000)}) == 1000
    assert supply() != cache_bench.unique_bodies(scenario)()  # each supply its own nonce
    gemini = orjson.loads(
        cache_bench.cacheable(protocols_bench.Scenario("g", "gemini", "gemini-pass"), "x-1")
    )
    assert gemini["contents"][0]["parts"][0]["text"] == "Say hello. x-1"
    assert gemini["generationConfig"]["temperature"] == 0


async def _capture(script: Path, runs: int) -> list[list[tuple[str, str, bytes]]]:
    """The (path, authorization, body) of every request wrk sends with `script`, per run,
    to a loopback server that answers each with an empty 200."""
    seen: list[tuple[str, str, bytes]] = []

    async def record(request: web.Request) -> web.Response:
        seen.append((request.path, request.headers["Authorization"], await request.read()))
        return web.json_response({})

    app = web.Application()
    app.router.add_post("/v1/chat/completions", record)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    found = []
    try:
        for _ in range(runs):
            wrk = await asyncio.create_subprocess_exec(
                "wrk", "-t2", "-c4", "-d1s", "-s", str(script), url,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
            )  # fmt: skip
            out, _ = await wrk.communicate()
            assert wrk.returncode == 0, out.decode()
            found.append(seen[:])
            seen.clear()
    finally:
        await runner.cleanup()
    return found


@pytest.mark.skipif(shutil.which("wrk") is None, reason="needs wrk")
async def test_the_unique_script_sends_every_request_a_new_body(tmp_path: Path) -> None:
    scenario = SCENARIOS["miss"]
    script = cache_bench.write_script(tmp_path / "miss.lua", scenario, unique=True)
    first, second = await _capture(script, 2)
    assert len(first) > 100 and len(second) > 100
    bodies = [body for _, _, body in first + second]
    assert len(set(bodies)) == len(bodies)  # within a run, across threads and across runs
    tags = set()
    for path, authorization, body in first + second:
        assert path == "/v1/chat/completions" and authorization == f"Bearer {bench.KEY}"
        content = orjson.loads(body)["messages"][0]["content"]
        tag = content.removeprefix("Say hello. ")
        assert TAG.fullmatch(tag), content
        assert body == cache_bench.cacheable(scenario, tag)  # byte for byte
        tags.add(tag.split("-")[0])
    assert len(tags) == 4  # a nonce per wrk thread per run


@pytest.mark.skipif(shutil.which("wrk") is None, reason="needs wrk")
async def test_the_same_body_script_sends_the_call_the_check_sends(tmp_path: Path) -> None:
    scenario = SCENARIOS["hit"]
    script = cache_bench.write_script(tmp_path / "hit.lua", scenario, unique=False)
    (sent,) = await _capture(script, 1)
    assert len(sent) > 100
    assert {body for _, _, body in sent} == {cache_bench.cacheable(scenario)}


def test_the_check_wants_the_headers_and_the_share_the_scenario_needs() -> None:
    assert cache_bench.verdict("off", [None], None)["ok"]
    assert not cache_bench.verdict("off", ["miss"], None)["ok"]
    assert cache_bench.verdict("hit", ["hit"], None)["ok"]
    assert not cache_bench.verdict("hit", ["bypass"], None)["ok"]
    assert cache_bench.verdict("miss", ["miss", "hit"], None)["ok"]
    assert not cache_bench.verdict("miss", ["miss", "miss"], None)["ok"]  # never stored
    counted = cache_bench.verdict("hit", ["hit"], {"hit": 9950.0, "miss": 1.0, "bypass": 49.0})
    assert counted["ok"] and counted["share"] == pytest.approx(0.995)
    assert not cache_bench.verdict("hit", ["hit"], {"hit": 98.0, "bypass": 2.0})["ok"]
    assert not cache_bench.verdict("miss", ["miss", "hit"], {"hit": 500.0, "miss": 500.0})["ok"]


def test_the_cache_counts_are_read_from_the_metrics_page() -> None:
    page = (
        "# HELP llm_proxy_cache_requests_total Cache lookups\n"
        "# TYPE llm_proxy_cache_requests_total counter\n"
        'llm_proxy_cache_requests_total{result="hit"} 1200.0\n'
        'llm_proxy_cache_requests_total{endpoint="chat/completions",result="miss"} 3\n'
        'llm_proxy_cache_requests_total{endpoint="embeddings",result="miss"} 2\n'
        'llm_proxy_requests_total{result="hit"} 7\n'
    )
    assert cache_bench.parse_counts(page) == {"hit": 1200.0, "miss": 5.0}
    assert cache_bench.parse_counts("llm_proxy_requests_total 3\n") is None


def _load(*values: float, key: str = "cpu_ms_per_request", errors: int = 0) -> dict[str, Any]:
    rounds = [{"cpu_ms_per_request": 0.2, "p50_ms": 10.0, "rps": 5000.0, key: v} for v in values]
    return {
        "cpu_ms_per_request": 0.2,
        "p50_ms": 10.0,
        "rps": 5000.0,
        key: sorted(values)[len(values) // 2],
        "rounds": rounds,
        "errors": errors,
    }


def _by_label(checked: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {c["ratio"]: c for c in checked}


def test_the_ratios_are_held_to_the_issues_bounds() -> None:
    load = {
        "off": _load(0.20, 0.26, 0.20),
        "hit": _load(0.10, 0.13, 0.11),  # 0.5, 0.5, 0.55
        "off-unique": _load(0.20, 0.26, 0.20),
        "miss": _load(0.204, 0.2678, 0.21),  # 1.02, 1.03, 1.05
    }
    checked = _by_label(cache_bench.ratios(load))
    hit = checked["CPU/req @32 hit ÷ off"]
    assert hit["value"] == pytest.approx(0.5) and hit["met"] is True
    miss = checked["CPU/req @32 miss ÷ off-unique"]
    assert miss["value"] == pytest.approx(1.03) and miss["met"] is True
    assert miss["min"] == pytest.approx(1.02) and miss["max"] == pytest.approx(1.05)
    assert checked["CPU/req @32 off-unique ÷ off"]["met"] is None  # shown, not judged
    load["miss"] = _load(0.22, 0.28, 0.22)
    assert _by_label(cache_bench.ratios(load))["CPU/req @32 miss ÷ off-unique"]["met"] is False
    load["hit"] = _load(0.13, 0.17, 0.13)  # 0.65
    assert _by_label(cache_bench.ratios(load))["CPU/req @32 hit ÷ off"]["met"] is False


def test_the_latency_bound_is_on_the_p50_ratio() -> None:
    off = _load(10.0, 12.0, 8.0, key="p50_ms")
    load = {name: _load(0.2, 0.2, 0.2) for name in ("off-unique", "miss")}
    load["off"], load["hit"] = off, _load(4.0, 6.5, 4.0, key="p50_ms")  # 0.4, 0.54, 0.5
    p50 = _by_label(cache_bench.ratios(load))["p50 @32 hit ÷ off"]
    assert p50["value"] == pytest.approx(0.5) and p50["met"] is True
    assert "both sides" in (cache_bench.unresolved(p50) or "")
    load["hit"] = _load(6.0, 6.5, 4.5, key="p50_ms")
    assert _by_label(cache_bench.ratios(load))["p50 @32 hit ÷ off"]["met"] is False


def test_a_failed_check_or_failed_requests_leave_the_ratios_unjudged() -> None:
    load = {name: _load(0.2, 0.2) for name in cache_bench.VARIANTS}
    load["hit"] = _load(0.1, 0.1)
    ok = {"ok": True}
    checks = {name: [ok, ok] for name in cache_bench.VARIANTS}
    assert _by_label(cache_bench.ratios(load, checks))["CPU/req @32 hit ÷ off"]["met"] is True
    checks["hit"] = [ok, {"ok": False}]
    judged = _by_label(cache_bench.ratios(load, checks))
    assert judged["CPU/req @32 hit ÷ off"]["met"] is None
    assert judged["CPU/req @32 miss ÷ off-unique"]["met"] is True  # not the hit's business
    load["miss"] = _load(0.2, 0.2, errors=3)
    judged = _by_label(cache_bench.ratios(load))
    assert judged["CPU/req @32 miss ÷ off-unique"]["met"] is None


def test_the_miss_bound_is_unresolved_when_the_rounds_spread_past_its_margin() -> None:
    check = {"bound": 1.05, "min": 1.0, "max": 1.08}
    assert cache_bench.unresolved(check) is None  # within 0.10
    wide = cache_bench.unresolved({**check, "min": 0.91, "max": 1.2})
    assert wide is not None and "instructions --cache" in wide
    assert cache_bench.unresolved({"bound": None, "min": 0.5, "max": 2.0}) is None
    assert cache_bench.unresolved({"bound": 0.6, "min": 0.4, "max": 0.55}) is None
