"""The soak: `llm-proxy serve` under mixed traffic with every feature on, for minutes, its RSS
sampled each round. Memory that grows round after round is a leak; the run says so.

    python -m tests.perf.soak [--seconds 600] [--out bench-results]   (also: make soak)

Features on: master keys (one with a request rate limit and a tokens-per-minute budget, one
restricted to some models, two tenants with a parallel-request limit), four providers
(weighted; one unreachable, so failover, ejection and the background health checks run all the
time; one answering 429 with Retry-After, one answering 500), model mapping and wildcards,
usage injection into streams, the metrics and /health/detailed tokens, the JSON access log and
a 2 s request timeout. Each round sends, all
to 127.0.0.1: non-streaming load (wrk, else the built-in generator), 200 concurrent streams,
and a batch of everything else (clients hanging up mid-stream, unknown models, invalid JSON,
gzip bodies, wrong keys, forbidden models, upstream 5xx and 429 answers, embeddings,
/v1/models, /metrics, /health/detailed), and two tenants storing, listing and deleting files
while each checks it cannot read or list the other's. Every answer's status is checked against
what that request must get; an unexpected one is counted as an error.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp

from tests.perf.bench import KEY, LOAD_CPU, PROXY_CPU, free_port, load, spawn, streams

NARROW_KEY = "sk-narrow-0123456789"
# Two tenants: each stores files through the proxy and must never see the other's.
TENANT_KEYS = {"tenant-a": "sk-tenant-a-0123456789", "tenant-b": "sk-tenant-b-0123456789"}
METRICS_TOKEN = "soak-metrics-token"
ADMIN_KEY = "soak-admin-key"


def write_config(path: Path, upstream: str, dead: str, port: int) -> None:
    path.write_text(
        f"""
providers:
  - name: main
    api_base: {upstream}/v1
    api_key: sk-upstream-main
    weight: 3
    model_mapping: {{"gpt-4o-mini": null, "gpt-4o": "gpt-4o-mini", "gpt-4.1*": null,
                     "text-embedding-3-small": null}}
  - name: unreachable
    api_base: {dead}/v1
    api_key: sk-upstream-dead
    weight: 1
    model_mapping: {{"gpt-4o-mini": null}}
  - name: limited
    api_base: {upstream}/v1
    api_key: sk-upstream-limited
    model_mapping: {{"gpt-limited": "gpt-4o-mini"}}
  - name: flaky
    api_base: {upstream}/v1
    api_key: sk-upstream-flaky
    model_mapping: {{"gpt-flaky": "gpt-4o-mini"}}
master_keys:
  - name: app
    key: {KEY}
    rate_limit: {{requests_per_second: 1000000, burst_size: 1000000}}
    tokens_per_minute: 1000000000
  - name: narrow
    key: {NARROW_KEY}
    allowed_models: ["gpt-4.1*"]
  - name: tenant-a
    key: {TENANT_KEYS["tenant-a"]}
    max_parallel_requests: 50
  - name: tenant-b
    key: {TENANT_KEYS["tenant-b"]}
    max_parallel_requests: 50
default_provider: main
metrics_token: {METRICS_TOKEN}
admin_key: {ADMIN_KEY}
request_timeout_secs: 2
server: {{host: 127.0.0.1, port: {port}}}
"""
    )


# (what is sent, the status it must get)
def _batch() -> list[tuple[dict[str, Any], set[int]]]:
    chat = {"messages": [{"role": "user", "content": "Say hello."}]}
    auth = {"Authorization": f"Bearer {KEY}"}
    calls: list[tuple[dict[str, Any], set[int]]] = []
    calls += [({"json": {**chat, "model": "gpt-4o"}, "headers": auth}, {200})] * 10
    calls += [({"json": {**chat, "model": "gpt-4.1-mini"}, "headers": auth}, {200})] * 5
    calls += [({"json": {**chat, "model": "no-such-model"}, "headers": auth}, {404})] * 10
    calls += [({"data": b'{"model": "gpt-4o-mini", ', "headers": auth}, {400})] * 10
    gz = gzip.compress(json.dumps({**chat, "model": "gpt-4o-mini"}).encode())
    calls += [({"data": gz, "headers": {**auth, "Content-Encoding": "gzip"}}, {200})] * 10
    calls += [({"json": {**chat, "model": "gpt-4o-mini"}, "headers": {}}, {401})] * 5
    wrong = {"Authorization": "Bearer sk-wrong"}
    calls += [({"json": {**chat, "model": "gpt-4o-mini"}, "headers": wrong}, {401})] * 5
    narrow = {"Authorization": f"Bearer {NARROW_KEY}"}
    calls += [({"json": {**chat, "model": "gpt-4o-mini"}, "headers": narrow}, {403})] * 5
    calls += [({"json": {**chat, "model": "gpt-4.1"}, "headers": narrow}, {200})] * 5
    failing = {**chat, "model": "gpt-flaky", "mock_status": 500}
    calls += [({"json": failing, "headers": auth}, {500, 502, 503})] * 5
    # The first 429 opens a Retry-After window: later ones are answered by the proxy itself.
    limited = {**chat, "model": "gpt-limited", "mock_status": 429}
    calls += [({"json": limited, "headers": auth}, {429})] * 3
    return calls


async def _mixed_round(url: str, counts: Counter[str]) -> None:
    auth = {"Authorization": f"Bearer {KEY}"}
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(timeout=timeout) as http:

        async def call(kwargs: dict[str, Any], expected: set[int]) -> None:
            async with http.post(url + "/v1/chat/completions", **kwargs) as resp:
                await resp.read()
                counts["ok" if resp.status in expected else f"unexpected {resp.status}"] += 1

        async def hang_up() -> None:
            body = {"model": "gpt-4o-mini", "stream": True, "mock_chunks": 200}
            body |= {"mock_delay_ms": 20, "messages": [{"role": "user", "content": "go"}]}
            async with http.post(url + "/v1/chat/completions", json=body, headers=auth) as resp:
                await resp.content.readany()  # a few events, then the client is gone
                counts["ok" if resp.status == 200 else f"unexpected {resp.status}"] += 1

        async def get(path: str, headers: dict[str, str]) -> None:
            async with http.get(url + path, headers=headers) as resp:
                await resp.read()
                counts["ok" if resp.status == 200 else f"unexpected {resp.status} {path}"] += 1

        async def embed() -> None:
            body = {"model": "text-embedding-3-small", "input": ["a", "b"]}
            async with http.post(url + "/v1/embeddings", json=body, headers=auth) as resp:
                await resp.read()
                counts["ok" if resp.status == 200 else f"unexpected {resp.status}"] += 1

        jobs: list[Any] = [call(kwargs, expected) for kwargs, expected in _batch()]
        jobs += [_tenants(http, url, counts)]
        jobs += [hang_up() for _ in range(20)]
        jobs += [embed() for _ in range(5)]
        jobs += [get("/v1/models", auth) for _ in range(5)]
        jobs += [get("/metrics", {"Authorization": f"Bearer {METRICS_TOKEN}"})]
        jobs += [get("/health/detailed", {"Authorization": f"Bearer {ADMIN_KEY}"})]
        await asyncio.gather(*jobs)


async def _tenants(http: aiohttp.ClientSession, url: str, counts: Counter[str]) -> None:
    """Each tenant stores a file; its owner reads, lists and deletes it, the other tenant gets
    404 for it (exactly as for an unknown id) and never sees it listed."""
    headers = {name: {"Authorization": f"Bearer {key}"} for name, key in TENANT_KEYS.items()}

    def check(what: str, ok: bool) -> None:
        counts["ok" if ok else f"unexpected {what}"] += 1

    async def upload(name: str) -> str | None:
        form = aiohttp.FormData()
        form.add_field("purpose", "assistants")
        form.add_field("file", b"soak data\n" * 100, filename=f"{name}.txt")
        async with http.post(url + "/v1/files", data=form, headers=headers[name]) as resp:
            body = await resp.json()
            check(f"upload {resp.status}", resp.status == 200)
            return body.get("id") if resp.status == 200 else None

    ids = dict(zip(headers, await asyncio.gather(*(upload(n) for n in headers)), strict=True))
    for name, other in (("tenant-a", "tenant-b"), ("tenant-b", "tenant-a")):
        own, theirs = ids[name], ids[other]
        if own is None or theirs is None:
            continue
        async with http.get(f"{url}/v1/files/{theirs}", headers=headers[name]) as resp:
            await resp.read()
            check(f"other tenant's file {resp.status}", resp.status == 404)
        async with http.get(f"{url}/v1/files", headers=headers[name]) as resp:
            listed = {item["id"] for item in (await resp.json()).get("data", [])}
            check(f"list {resp.status}", resp.status == 200 and own in listed)
            check("other tenant's file listed", theirs not in listed)
    for name, file_id in ids.items():
        if file_id is not None:
            async with http.delete(f"{url}/v1/files/{file_id}", headers=headers[name]) as resp:
                await resp.read()
                check(f"delete {resp.status}", resp.status == 200)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=600.0, help="how long to soak")
    parser.add_argument("--out", default="bench-results", help="directory for the JSON results")
    args = parser.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="llm-proxy-soak-"))
    ports = {name: free_port() for name in ("mock", "dead", "proxy")}
    config = tmp / "soak.yaml"
    write_config(
        config,
        f"http://127.0.0.1:{ports['mock']}",
        f"http://127.0.0.1:{ports['dead']}",  # nothing listens there
        ports["proxy"],
    )
    py = sys.executable
    mock_cmd = [py, "-m", "llm_proxy", "mock-upstream", "--port", str(ports["mock"])]
    proxy_cmd = [py, "-m", "llm_proxy", "serve", "--config", str(config)]
    counts: Counter[str] = Counter()
    samples: list[dict[str, Any]] = []
    with (
        spawn("mock", mock_cmd, LOAD_CPU, ports["mock"], tmp / "mock.log", "/v1/models"),
        spawn(
            "llm-proxy", proxy_cmd, PROXY_CPU, ports["proxy"], tmp / "proxy.log", "/health"
        ) as proxy,
    ):
        started = time.monotonic()
        print(f"soak {args.seconds:.0f}s; idle RSS {proxy.rss_mb():.1f} MB", flush=True)
        while time.monotonic() - started < args.seconds:
            r = load(proxy, 32, 3.0, False)
            s = streams(proxy.url, 200, 30, 25.0, None)
            asyncio.run(_mixed_round(proxy.url, counts))
            if s.errors:
                counts["stream errors"] += s.errors
            else:
                counts["ok"] += 1
            sample = {
                "secs": round(time.monotonic() - started, 1),
                "rss_mb": round(proxy.rss_mb(), 1),
                "req_per_sec": round(r.rps),
            }
            samples.append(sample)
            print(f"   {sample}", flush=True)
    result = _verdict(samples, counts)
    print(json.dumps(result["summary"], indent=2))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"soak-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(result, indent=2))
    print(f"results: {path}")
    return 0 if result["summary"]["passed"] else 1


# RSS settles in the first rounds (pools, caches, allocator arenas); after that, a leak shows
# as growth from the second third of the run to the last.
_GROWTH_LIMIT_MB = 3.0


def _verdict(samples: list[dict[str, Any]], counts: Counter[str]) -> dict[str, Any]:
    rss = [s["rss_mb"] for s in samples]
    third = max(1, len(rss) // 3)
    settled = statistics.median(rss[third : 2 * third] or rss)
    last = statistics.median(rss[-third:])
    unexpected = {k: v for k, v in counts.items() if k != "ok"}
    summary = {
        "rounds": len(samples),
        "rss_first_mb": rss[0] if rss else None,
        "rss_settled_mb": settled,
        "rss_last_mb": last,
        "growth_mb": round(last - settled, 1),
        "answers_as_expected": counts["ok"],
        "unexpected": unexpected,
        "passed": last - settled <= _GROWTH_LIMIT_MB and not unexpected,
    }
    return {"summary": summary, "samples": samples}


if __name__ == "__main__":
    raise SystemExit(main())
