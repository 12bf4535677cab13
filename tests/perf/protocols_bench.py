"""The protocol paths: OpenAI, Anthropic and Gemini clients, passed through and translated, in
one run.

    python -m tests.perf.protocols_bench [--quick] [--rounds N] [--duration S] [--out DIR]
                                         [--only NAME,...] [--litellm PATH_TO_LITELLM_BIN]

One fake upstream (`llm-proxy mock-upstream`, serving on one port OpenAI's API under /v1,
Anthropic's `POST /v1/messages`, Google's Gemini API, Vertex AI's publisher models with its
token endpoint, and Bedrock's Converse) and one `llm-proxy serve` with five providers on it:
`oai` (OpenAI type) serves `gpt-pass`, `claude-via-chat` and `gemini-via-openai`; `anth`
(Anthropic type) `claude-pass` and `gpt-via-messages`; `gemini` (AI Studio, its key any)
`gemini-pass`, `gpt-via-gemini` and `claude-via-gemini`; `bedrock` (static dummy keys: the mock
checks a signature is there, not what it is) `gpt-via-bedrock` and `claude-via-bedrock`;
`vertex` (a service account made for the run, whose token_uri is the mock's
`/mock/oauth2/token`) `claude-via-vertex`. The scenarios:

    openai-pass           OpenAI client, chat completion passed to an OpenAI upstream
    anthropic-pass        Anthropic client, Messages call passed to an Anthropic upstream
    anthropic-translated  Anthropic client, its Messages call translated to a chat completion
    openai-translated     OpenAI client, its chat completion translated to a Messages call
    gemini-pass           Gemini client (generateContent), passed to AI Studio
    openai-via-gemini     OpenAI client, its chat completion translated to generateContent
    anthropic-via-gemini  Anthropic client, its Messages call translated to generateContent
    openai-via-bedrock    OpenAI client, its chat completion translated to Converse
    anthropic-via-bedrock Anthropic client, its Messages call translated to Converse
    anthropic-via-vertex  Anthropic client, its Messages call sent to Vertex's rawPredict
    gemini-via-openai     Gemini client, its generateContent translated to a chat completion

The proxy runs as production runs it (a master key with a never-triggered rate limit, prices,
a JSON access line per request) but without the request log (no database: the log's cost is
the same whatever the protocol, and `tests.perf.bench` measures it). The proxy is pinned to
CPU 0, the upstream, wrk and this process (the stream clients) to CPU 1, as `bench` does.

Non-streaming: 32 connections (wrk when installed, else a built-in aiohttp generator), every
scenario once per round in an order that rotates round by round, each round on a fresh
`llm-proxy serve` process (`fresh_proxy`: processes of the same code differ by up to 10-15 %),
each scenario warmed up on it first; each figure is the median of its rounds. Streams: 1,000
concurrent streams per scenario (100 with --quick), 30 chunks 25 ms apart, also in rotating
rounds on a fresh process each; a chunk is a content delta (an OpenAI `data:` event with
content, an Anthropic `content_block_delta`), the time to first chunk is the time to the first
such delta, and a stream is an error unless it answers 200, carries every chunk and ends
properly (`data: [DONE]`, `event: message_stop`). A Gemini client's chunk is a
streamGenerateContent (`alt=sse`) event with a text part; its stream ends properly when its last
event carries a `finishReason`.

The ratios the protocol work is held to: CPU per request of anthropic-pass ÷ openai-pass
(≤ 1.05), of each translated scenario ÷ its client's pass-through (≤ 1.3: openai-pass for
OpenAI clients, anthropic-pass for Anthropic clients, gemini-pass for Gemini clients), and the
chunks/s of each translated stream between OpenAI and Anthropic ÷ its client's pass-through
(≥ 0.9, no errors; over the cloud upstreams shown only: the mock paces every event it writes,
and their streams have other numbers of events around the same content). A CPU ratio is the
median over the rounds of the two scenarios' ratio within one round (`paired_ratio`): the
machine's speed drifts between rounds, and a pair in one round shares it. With --litellm, LiteLLM's
proxy (the peer users compare with) serves an Anthropic client's `/v1/messages` from the same
mock as an OpenAI-compatible upstream, measured in the same rounds (non-streaming only).
Prints a table and saves JSON into --out.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import aiohttp
import orjson

from llm_proxy.testing.mock.vertex import TOKEN_PATH, mock_service_account
from tests.perf import bench

Protocol = Literal["openai", "anthropic", "gemini"]
PROMPT = [{"role": "user", "content": "Say hello."}]
GEMINI_PROMPT = [{"role": "user", "parts": [{"text": "Say hello."}]}]
ANTHROPIC_VERSION = "2023-06-01"
LITELLM_KEY = "sk-litellm-bench-0123456789"
# An OpenAI chunk whose delta carries text.
NON_EMPTY_CONTENT = re.compile(rb'"delta":\{[^{}]*"content":"[^"]')
# A Gemini chunk with a text part.
GEMINI_TEXT = re.compile(rb'"text":"[^"]')
# The service account the vertex provider signs its token requests with (made once a run).
VERTEX_PROJECT = "mock-project"


@dataclass(frozen=True)
class Scenario:
    """One client call: which protocol the client speaks, which model it names (the model
    picks the provider, hence pass-through or translation) and which server it calls."""

    name: str
    protocol: Protocol
    model: str
    target: str = "llm-proxy"
    key: str = bench.KEY

    def path(self, stream: bool = False) -> str:
        if self.protocol == "gemini":
            method = "streamGenerateContent?alt=sse" if stream else "generateContent"
            return f"/v1beta/models/{self.model}:{method}"
        return "/v1/messages" if self.protocol == "anthropic" else "/v1/chat/completions"

    def headers(self) -> dict[str, str]:
        if self.protocol == "gemini":
            return {"x-goog-api-key": self.key, "Content-Type": "application/json"}
        if self.protocol == "anthropic":
            return {
                "x-api-key": self.key,
                "anthropic-version": ANTHROPIC_VERSION,
                "Content-Type": "application/json",
            }
        return {"Authorization": f"Bearer {self.key}", "Content-Type": "application/json"}

    def body(self, stream: bool = False) -> bytes:
        if self.protocol == "gemini":  # the model and streaming are in the path
            config = {"maxOutputTokens": 64}
            return orjson.dumps({"contents": GEMINI_PROMPT, "generationConfig": config})
        data: dict[str, Any] = {"model": self.model, "messages": PROMPT}
        if self.protocol == "anthropic":
            data["max_tokens"] = 64
        if stream:
            data["stream"] = True
        return orjson.dumps(data)


SCENARIOS = (
    Scenario("openai-pass", "openai", "gpt-pass"),
    Scenario("anthropic-pass", "anthropic", "claude-pass"),
    Scenario("anthropic-translated", "anthropic", "claude-via-chat"),
    Scenario("openai-translated", "openai", "gpt-via-messages"),
    Scenario("gemini-pass", "gemini", "gemini-pass"),
    Scenario("openai-via-gemini", "openai", "gpt-via-gemini"),
    Scenario("anthropic-via-gemini", "anthropic", "claude-via-gemini"),
    Scenario("openai-via-bedrock", "openai", "gpt-via-bedrock"),
    Scenario("anthropic-via-bedrock", "anthropic", "claude-via-bedrock"),
    Scenario("anthropic-via-vertex", "anthropic", "claude-via-vertex"),
    Scenario("gemini-via-openai", "gemini", "gemini-via-openai"),
)
LITELLM = Scenario(
    "litellm-anthropic-translated", "anthropic", "claude-via-litellm", "litellm", LITELLM_KEY
)
# What the issue holds the protocol paths to: (numerator, denominator, bound, metric), the metric
# "cpu" (per request), "chunks" (per second) or "stream_cpu" (per stream); bound None: shown only.
# A translated stream is held to its client's pass-through. The mock paces every event it writes
# (25 ms apart) and an Anthropic stream has more events around its content than a chat stream,
# so the ratios over the same upstream protocol follow.
TARGETS: tuple[tuple[str, str, float | None, str], ...] = (
    ("anthropic-pass", "openai-pass", 1.05, "cpu"),
    ("anthropic-translated", "anthropic-pass", 1.3, "cpu"),
    ("openai-translated", "openai-pass", 1.3, "cpu"),
    ("anthropic-translated", "anthropic-pass", 0.9, "chunks"),
    ("openai-translated", "openai-pass", 0.9, "chunks"),
    ("anthropic-translated", "openai-pass", None, "chunks"),
    ("openai-translated", "anthropic-pass", None, "chunks"),
    ("anthropic-translated", "anthropic-pass", None, "stream_cpu"),
    ("openai-translated", "openai-pass", None, "stream_cpu"),
    ("litellm-anthropic-translated", "anthropic-translated", None, "cpu"),
    # The cloud upstreams, and Gemini clients: CPU held to the client's pass-through; the
    # streams' figures shown.
    ("gemini-pass", "openai-pass", None, "cpu"),
    ("openai-via-gemini", "openai-pass", 1.3, "cpu"),
    ("anthropic-via-gemini", "anthropic-pass", 1.3, "cpu"),
    ("openai-via-bedrock", "openai-pass", 1.3, "cpu"),
    ("anthropic-via-bedrock", "anthropic-pass", 1.3, "cpu"),
    ("anthropic-via-vertex", "anthropic-pass", 1.3, "cpu"),
    ("gemini-via-openai", "gemini-pass", 1.3, "cpu"),
    ("openai-via-gemini", "openai-pass", None, "chunks"),
    ("anthropic-via-gemini", "anthropic-pass", None, "chunks"),
    ("openai-via-bedrock", "openai-pass", None, "chunks"),
    ("anthropic-via-bedrock", "anthropic-pass", None, "chunks"),
    ("anthropic-via-vertex", "anthropic-pass", None, "chunks"),
    ("gemini-via-openai", "gemini-pass", None, "chunks"),
    ("openai-via-gemini", "openai-pass", None, "stream_cpu"),
    ("anthropic-via-gemini", "anthropic-pass", None, "stream_cpu"),
    ("openai-via-bedrock", "openai-pass", None, "stream_cpu"),
    ("anthropic-via-bedrock", "anthropic-pass", None, "stream_cpu"),
    ("anthropic-via-vertex", "anthropic-pass", None, "stream_cpu"),
    ("gemini-via-openai", "gemini-pass", None, "stream_cpu"),
)


# Non-streaming load


def write_wrk_script(path: Path, scenario: Scenario) -> Path:
    """A wrk script sending the scenario's call (the JSON holds no single quote)."""
    lines = ['wrk.method = "POST"', f"wrk.body = '{scenario.body().decode()}'"]
    lines += [f'wrk.headers["{name}"] = "{value}"' for name, value in scenario.headers().items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def run_wrk(url: str, script: Path, connections: int, seconds: float) -> bench.LoadResult:
    """`bench.run_wrk` with a script and a path of our own."""
    cmd = bench.pinned(
        bench.LOAD_CPU,
        [
            "wrk",
            "-t1",
            f"-c{connections}",
            f"-d{max(1, round(seconds))}s",
            "--latency",
            "-s",
            str(script),
            url,
        ],
    )
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    latency = dict(re.findall(r"^\s+(50|99)%\s+(\S+)\s*$", out, re.M))
    requests = re.search(r"(\d+) requests in", out)
    rate = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if set(latency) != {"50", "99"} or requests is None or rate is None:
        raise RuntimeError(f"unexpected wrk output:\n{out}")
    errors = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", out))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return bench.LoadResult(
        connections,
        float(rate[1]),
        bench._ms(latency["50"]),
        bench._ms(latency["99"]),
        int(requests[1]),
        errors + (int(non2xx[1]) if non2xx else 0),
    )


async def builtin_load(
    url: str, scenario: Scenario, connections: int, seconds: float
) -> bench.LoadResult:
    """The scenario's call from `connections` aiohttp workers for `seconds` (without wrk)."""
    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + seconds
    body, headers = scenario.body(), scenario.headers()

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal errors
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            try:
                async with session.post(url, data=body, headers=headers) as response:
                    await response.read()
                    errors += response.status != 200
            except aiohttp.ClientError:
                errors += 1
            latencies.append(time.perf_counter() - started)

    connector = aiohttp.TCPConnector(limit=connections)
    async with aiohttp.ClientSession(connector=connector) as session:
        started = time.perf_counter()
        await asyncio.gather(*(worker(session) for _ in range(connections)))
        elapsed = time.perf_counter() - started
    latencies.sort()
    return bench.LoadResult(
        connections,
        len(latencies) / elapsed,
        latencies[len(latencies) // 2] * 1000,
        latencies[int(len(latencies) * 0.99)] * 1000,
        len(latencies),
        errors,
    )


def load(
    target: bench.Proc,
    scenario: Scenario,
    script: Path,
    connections: int,
    seconds: float,
    warm_up: bool,
) -> bench.LoadResult:
    """One load run of the scenario, with the target's CPU ms per request from /proc."""
    url = target.url + scenario.path()

    def run(duration: float) -> bench.LoadResult:
        if shutil.which("wrk"):
            return run_wrk(url, script, connections, duration)
        return asyncio.run(builtin_load(url, scenario, connections, duration))

    if warm_up:
        run(min(2.0, seconds))  # pools, caches, the first translation's imports
    before = target.cpu_secs()
    result = run(seconds)
    if result.requests:
        result.cpu_ms_per_request = (target.cpu_secs() - before) * 1000 / result.requests
    return result


# Streams


class StreamReader:
    """Reads one streamed answer as it arrives: counts its content deltas, notes when the
    first one came and whether the stream ended properly (its last event is the end mark)."""

    def __init__(self, protocol: Protocol, started: float) -> None:
        self.protocol = protocol
        self.started = started
        self.deltas = 0
        self.first_delta_secs: float | None = None
        self.ended = False
        self._pending = b""

    def feed(self, data: bytes) -> None:
        if self.protocol == "gemini":  # Google ends its events with \r\n\r\n
            data = data.replace(b"\r", b"")
        *events, self._pending = (self._pending + data).split(b"\n\n")
        for event in events:
            event = event.strip()
            if not event:
                continue
            self.ended = self._is_end(event)
            if self._is_content_delta(event):
                self.deltas += 1
                if self.first_delta_secs is None:
                    self.first_delta_secs = time.perf_counter() - self.started

    def _is_end(self, event: bytes) -> bool:
        if self.protocol == "anthropic":
            return event.startswith(b"event: message_stop")
        if self.protocol == "gemini":
            return event.startswith(b"data: {") and b'"finishReason":"' in event
        return event == b"data: [DONE]"

    def _is_content_delta(self, event: bytes) -> bool:
        if self.protocol == "anthropic":
            return event.startswith(b"event: content_block_delta")
        if self.protocol == "gemini":
            return event.startswith(b"data: {") and GEMINI_TEXT.search(event) is not None
        # A chunk with text in its delta (not the role's empty content nor the finish chunk's
        # empty delta); a byte search keeps the clients' CPU (shared with the upstream) low.
        return event.startswith(b"data: {") and NON_EMPTY_CONTENT.search(event) is not None


def busy_secs(procs: list[bench.Proc]) -> float:
    """CPU seconds used so far by `procs` and this process (the stream clients)."""
    own = os.times()
    return own.user + own.system + sum(proc.cpu_secs() for proc in procs)


async def _streams(
    target: bench.Proc, scenario: Scenario, count: int, chunks: int, mock: bench.Proc
) -> bench.StreamResult:
    body, headers = scenario.body(stream=True), scenario.headers()
    url = target.url + scenario.path(stream=True)
    first_delta: list[float] = []
    received = errors = 0

    async def one(session: aiohttp.ClientSession) -> None:
        nonlocal received, errors
        reader = StreamReader(scenario.protocol, time.perf_counter())
        try:
            async with session.post(url, data=body, headers=headers) as response:
                if response.status != 200:
                    errors += 1
                    return
                async for data in response.content.iter_any():
                    reader.feed(data)
        except (aiohttp.ClientError, TimeoutError):
            errors += 1
            return
        received += reader.deltas
        if reader.first_delta_secs is not None:
            first_delta.append(reader.first_delta_secs)
        errors += not reader.ended or reader.deltas < chunks

    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=120)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        cpu_before, load_before = target.cpu_secs(), busy_secs([mock])
        started = time.perf_counter()
        await asyncio.gather(*(one(session) for _ in range(count)))
        elapsed = time.perf_counter() - started
        proxy_secs, load_secs = target.cpu_secs() - cpu_before, busy_secs([mock]) - load_before
    first_delta.sort()
    first_delta = first_delta or [0.0]
    return bench.StreamResult(
        streams=count,
        chunks=received,
        chunks_per_sec=received / elapsed,
        ttfc_p50_ms=first_delta[len(first_delta) // 2] * 1000,
        ttfc_p99_ms=first_delta[min(len(first_delta) - 1, int(len(first_delta) * 0.99))] * 1000,
        errors=errors,
        cpu_ms_per_stream=proxy_secs * 1000 / count,
        # How busy each side's CPU was: near 1.0, that side set the pace (chunks/s and time to
        # first chunk then measure it, not the proxy).
        extra={"proxy_cpu_busy": proxy_secs / elapsed, "load_cpu_busy": load_secs / elapsed},
    )


def streams(
    target: bench.Proc, scenario: Scenario, count: int, chunks: int, mock: bench.Proc
) -> bench.StreamResult:
    """`count` concurrent streams of the scenario, all opened at once."""
    return asyncio.run(_streams(target, scenario, count, chunks, mock))


# Setup


# The models each provider serves (under their own names upstream).
PROVIDER_MODELS: dict[str, tuple[str, ...]] = {
    "oai": ("gpt-pass", "claude-via-chat", "gemini-via-openai"),
    "anth": ("claude-pass", "gpt-via-messages"),
    "gemini": ("gemini-pass", "gpt-via-gemini", "claude-via-gemini"),
    "bedrock": ("gpt-via-bedrock", "claude-via-bedrock"),
    "vertex": ("claude-via-vertex",),
}


def _mapping(provider: str) -> str:
    return "{" + ", ".join(f'"{model}": null' for model in PROVIDER_MODELS[provider]) + "}"


def write_config(path: Path, upstream: str, port: int, service_account: dict[str, str]) -> None:
    """The proxy: every provider on one mock (the vertex one with `service_account`, its
    token_uri the mock's); auth, a never-triggered rate limit, prices and the JSON access
    line on; the request log off (it needs a database)."""
    prices = "{input_per_mtok: 3.0, output_per_mtok: 15.0}"
    pricing = "".join(
        f"  {model}: {prices}\n" for models in PROVIDER_MODELS.values() for model in models
    )
    # A JSON string is a YAML double-quoted scalar.
    credentials = json.dumps(json.dumps(service_account))
    path.write_text(
        f"""
providers:
  - name: oai
    api_base: {upstream}/v1
    api_key: sk-upstream-bench
    model_mapping: {_mapping("oai")}
  - name: anth
    provider_type: anthropic
    api_base: {upstream}
    api_key: sk-ant-upstream-bench
    model_mapping: {_mapping("anth")}
  - name: gemini
    provider_type: gemini
    api_base: {upstream}
    api_key: AIza-upstream-bench
    model_mapping: {_mapping("gemini")}
  - name: bedrock
    provider_type: bedrock
    region: us-east-1
    api_base: {upstream}
    aws_access_key_id: AKIAMOCKBENCHKEY0000
    aws_secret_access_key: mock-bench-secret-access-key
    model_mapping: {_mapping("bedrock")}
  - name: vertex
    provider_type: vertex
    project: {VERTEX_PROJECT}
    location: us-east5
    api_base: {upstream}
    credentials_json: {credentials}
    model_mapping: {_mapping("vertex")}
master_keys:
  - name: bench
    key: {bench.KEY}
    rate_limit: {{requests_per_second: 1000000, burst_size: 1000000}}
server: {{host: 127.0.0.1, port: {port}}}
pricing:
{pricing}request_log: {{enabled: false}}
"""
    )


def write_litellm_config(path: Path, upstream: str) -> None:
    """LiteLLM: one model on the mock as an OpenAI-compatible upstream, behind a master key
    (its default logging: uvicorn's access line per request, as ours writes one)."""
    path.write_text(
        f"""
model_list:
  - model_name: {LITELLM.model}
    litellm_params:
      model: openai/claude-via-chat
      api_base: {upstream}/v1
      api_key: sk-upstream-bench
general_settings:
  master_key: {LITELLM_KEY}
litellm_settings:
  telemetry: false
"""
    )


def litellm_version(binary: str) -> str:
    python = Path(binary).with_name("python")
    found = subprocess.run(
        [str(python), "-c", "import importlib.metadata as m; print(m.version('litellm'))"],
        capture_output=True,
        text=True,
    )
    return found.stdout.strip() or "unknown"


def start_litellm(
    stack: contextlib.ExitStack, binary: str, tmp: Path, port: int, upstream: str
) -> bench.Proc:
    """LiteLLM's proxy (one worker, pinned to the proxy's CPU), up; `stack` stops it. Its
    start takes long (seconds of imports): its own, longer wait."""
    config = tmp / "litellm.yaml"
    write_litellm_config(config, upstream)
    cmd = [binary, "--config", str(config), "--host", "127.0.0.1", "--port", str(port),
           "--num_workers", "1"]  # fmt: skip
    with (tmp / "litellm.log").open("wb") as out:
        popen = subprocess.Popen(
            bench.pinned(bench.PROXY_CPU, cmd),
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "LITELLM_LOG": "ERROR"},
        )
    proc = bench.Proc("litellm", popen, f"http://127.0.0.1:{port}")
    stack.callback(proc.stop)
    bench.wait_health(proc.url, "/health/liveliness", timeout=180)
    return proc


@contextlib.contextmanager
def servers(
    tmp: Path, chunks: int, delay_ms: float, litellm: str | None
) -> Iterator[dict[str, bench.Proc]]:
    """The mock (CPU 1), llm-proxy (CPU 0) and, when asked, LiteLLM (CPU 0), all up."""
    py = sys.executable
    ports = {name: bench.free_port() for name in ("mock", "llm-proxy", "litellm")}
    mock_cmd = [py, "-m", "llm_proxy", "mock-upstream", "--port", str(ports["mock"]),
                "--tool", "none", "--chunks", str(chunks), "--delay-ms", str(delay_ms)]  # fmt: skip
    with contextlib.ExitStack() as stack:
        mock = stack.enter_context(
            bench.spawn(
                "mock", mock_cmd, bench.LOAD_CPU, ports["mock"], tmp / "mock.log", "/v1/models"
            )
        )
        config = tmp / "proxy.yaml"
        account = mock_service_account(mock.url + TOKEN_PATH, VERTEX_PROJECT)
        write_config(config, mock.url, ports["llm-proxy"], account)
        procs = {
            "mock": mock,
            "llm-proxy": stack.enter_context(
                bench.spawn(
                    "llm-proxy",
                    [py, "-m", "llm_proxy", "serve", "--config", str(config)],
                    bench.PROXY_CPU,
                    ports["llm-proxy"],
                    tmp / "proxy.log",
                    "/health",
                )
            ),
        }
        if litellm is not None:
            procs["litellm"] = start_litellm(stack, litellm, tmp, ports["litellm"], mock.url)
        yield procs


@contextlib.contextmanager
def fresh_proxy(procs: dict[str, bench.Proc], tmp: Path, round_index: int) -> Iterator[None]:
    """A new `llm-proxy serve` (the same config and port) as `procs["llm-proxy"]` for one
    round, stopped after it. Two processes of the same code differ by up to 10-15 % in CPU per
    request on this machine kind (memory layout, hash seeds), and not alike for every route:
    each round on a process of its own, the medians over the rounds average the processes out
    rather than measure one."""
    old = procs["llm-proxy"]
    old.stop()
    port = int(old.url.rsplit(":", 1)[1])
    cmd = [sys.executable, "-m", "llm_proxy", "serve", "--config", str(tmp / "proxy.yaml")]
    log = tmp / f"proxy-round-{round_index}.log"
    with bench.spawn("llm-proxy", cmd, bench.PROXY_CPU, port, log, "/health") as proxy:
        procs["llm-proxy"] = proxy
        yield


# The run


def rotated(items: list[Scenario], round_index: int) -> list[Scenario]:
    """The scenarios in round `round_index`'s order: each goes first in turn."""
    shift = round_index % len(items)
    return items[shift:] + items[:shift]


def measure_load(
    procs: dict[str, bench.Proc],
    scenarios: list[Scenario],
    tmp: Path,
    connections: int,
    seconds: float,
    rounds: int,
) -> dict[str, list[bench.LoadResult]]:
    scripts = {s.name: write_wrk_script(tmp / f"{s.name}.lua", s) for s in scenarios}
    runs: dict[str, list[bench.LoadResult]] = {s.name: [] for s in scenarios}
    for i in range(rounds):
        print(f"== load, {connections} connections, round {i + 1} of {rounds}", flush=True)
        with fresh_proxy(procs, tmp, i):
            for scenario in rotated(scenarios, i):
                result = load(
                    procs[scenario.target],
                    scenario,
                    scripts[scenario.name],
                    connections,
                    seconds,
                    warm_up=i == 0 or scenario.target == "llm-proxy",
                )
                runs[scenario.name].append(result)
                print(
                    f"   {scenario.name:>28}: {result.rps:8.0f} req/s  p50 {result.p50_ms:.2f} ms"
                    f"  p99 {result.p99_ms:.2f} ms  cpu {result.cpu_ms_per_request or 0:.3f}"
                    f" ms/req  errors {result.errors}",
                    flush=True,
                )
    return runs


def measure_streams(
    procs: dict[str, bench.Proc],
    scenarios: list[Scenario],
    tmp: Path,
    count: int,
    chunks: int,
    rounds: int,
) -> dict[str, list[bench.StreamResult]]:
    runs: dict[str, list[bench.StreamResult]] = {s.name: [] for s in scenarios}
    for i in range(rounds):
        print(f"== {count} streams, round {i + 1} of {rounds}", flush=True)
        with fresh_proxy(procs, tmp, rounds + i):
            for scenario in rotated(scenarios, i):
                result = streams(procs["llm-proxy"], scenario, count, chunks, procs["mock"])
                runs[scenario.name].append(result)
                print(
                    f"   {scenario.name:>28}: {result.chunks_per_sec:8.0f} chunks/s  "
                    f"ttfc p50 {result.ttfc_p50_ms:.1f} ms  p99 {result.ttfc_p99_ms:.1f} ms  "
                    f"cpu {result.cpu_ms_per_stream or 0:.2f} ms/stream  errors {result.errors}"
                    f"  busy: proxy {result.extra['proxy_cpu_busy']:.2f} "
                    f"load {result.extra['load_cpu_busy']:.2f}",
                    flush=True,
                )
                time.sleep(0.5)  # the closed streams' sockets leave before the next opens
    return runs


def selected(names: list[str]) -> list[Scenario]:
    """The named scenarios and the ones their ratios divide by, in `SCENARIOS`' order."""
    known = {scenario.name for scenario in SCENARIOS}
    if unknown := [name for name in names if name not in known]:
        raise SystemExit(f"unknown scenarios {unknown}; known: {sorted(known)}")
    wanted = set(names) | {d for n, d, _, _ in TARGETS if n in names and d in known}
    return [scenario for scenario in SCENARIOS if scenario.name in wanted]


def median_stream(runs: list[bench.StreamResult]) -> dict[str, Any]:
    """One figure per metric, the median over the rounds; errors are summed."""
    cpus = [r.cpu_ms_per_stream for r in runs if r.cpu_ms_per_stream is not None]
    return {
        "streams": runs[0].streams,
        "chunks_per_sec": statistics.median(r.chunks_per_sec for r in runs),
        "ttfc_p50_ms": statistics.median(r.ttfc_p50_ms for r in runs),
        "ttfc_p99_ms": statistics.median(r.ttfc_p99_ms for r in runs),
        "cpu_ms_per_stream": statistics.median(cpus) if cpus else None,
        "errors": sum(r.errors for r in runs),
        "proxy_cpu_busy": statistics.median(r.extra["proxy_cpu_busy"] for r in runs),
        "load_cpu_busy": statistics.median(r.extra["load_cpu_busy"] for r in runs),
        "rounds": [asdict(r) for r in runs],
    }


def paired_ratio(numerator: dict[str, Any], denominator: dict[str, Any]) -> float:
    """CPU per request of `numerator` ÷ `denominator`: the median, over the rounds, of the two
    scenarios' ratio in the same round (each round runs every scenario within a minute or
    so), rather than the ratio of the two medians: this machine's speed drifts by 20-30 %
    between rounds, and a pair in one round shares the drift."""
    pairs = [
        (a["cpu_ms_per_request"], b["cpu_ms_per_request"])
        for a, b in zip(numerator.get("rounds", ()), denominator.get("rounds", ()), strict=False)
        if a.get("cpu_ms_per_request") and b.get("cpu_ms_per_request")
    ]
    if not pairs:
        return float(numerator["cpu_ms_per_request"] / denominator["cpu_ms_per_request"])
    return float(statistics.median(a / b for a, b in pairs))


def ratios(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Each target of `TARGETS`: its measured ratio and whether it is met."""
    load, stream = results["load"], results["streams"]
    checked = []
    for numerator, denominator, bound, metric in TARGETS:
        if metric == "cpu":
            if numerator not in load or denominator not in load:
                continue
            value = paired_ratio(load[numerator], load[denominator])
            label = f"CPU/req {numerator} ÷ {denominator}"
            wanted, met = (f"≤ {bound}", value <= bound) if bound else ("", None)
        elif metric == "stream_cpu":
            if numerator not in stream or denominator not in stream:
                continue
            value = (
                stream[numerator]["cpu_ms_per_stream"] / stream[denominator]["cpu_ms_per_stream"]
            )
            label = f"CPU/stream {numerator} ÷ {denominator}"
            wanted, met = "", None
        else:
            if numerator not in stream or denominator not in stream:
                continue
            value = stream[numerator]["chunks_per_sec"] / stream[denominator]["chunks_per_sec"]
            label = f"chunks/s {numerator} ÷ {denominator}"
            wanted, met = (
                (f"≥ {bound}, 0 errors", value >= bound and stream[numerator]["errors"] == 0)
                if bound
                else ("", None)
            )
        checked.append({"ratio": label, "value": value, "target": wanted, "met": met})
    return checked


def report(results: dict[str, Any]) -> None:
    print("\n" + "=" * 100)
    print(f"machine: {results['machine']}")
    print(f"settings: {results['settings']}")
    load = results["load"]
    if load:
        print(
            f"\n{'non-streaming @' + str(results['settings']['connections']):<30}"
            f"{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'CPU ms/req':>12}{'errors':>8}"
        )
        for name, figures in load.items():
            print(
                f"{name:<30}{figures['rps']:>10.0f}{figures['p50_ms']:>9.2f}"
                f"{figures['p99_ms']:>9.2f}{figures['cpu_ms_per_request']:>12.3f}"
                f"{figures['errors']:>8}"
            )
    stream = results["streams"]
    if stream:
        count = next(iter(stream.values()))["streams"]
        print(
            f"\n{str(count) + ' streams':<30}{'chunks/s':>10}{'ttfc p50':>10}{'ttfc p99':>10}"
            f"{'CPU ms/stream':>15}{'errors':>8}{'busy proxy':>12}{'busy load':>11}"
        )
        for name, figures in stream.items():
            print(
                f"{name:<30}{figures['chunks_per_sec']:>10.0f}{figures['ttfc_p50_ms']:>10.1f}"
                f"{figures['ttfc_p99_ms']:>10.1f}{figures['cpu_ms_per_stream']:>15.2f}"
                f"{figures['errors']:>8}{figures['proxy_cpu_busy']:>12.2f}"
                f"{figures['load_cpu_busy']:>11.2f}"
            )
    print()
    for check in results["ratios"]:
        verdict = {True: "met", False: "MISSED", None: ""}[check["met"]]
        target = f"  ({check['target']}: {verdict})" if check["target"] else ""
        print(f"{check['ratio']:<66}{check['value']:>7.3f}{target}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per load run")
    parser.add_argument("--rounds", type=int, default=5, help="rounds over all scenarios")
    parser.add_argument("--quick", action="store_true", help="short runs (a smoke test)")
    parser.add_argument("--out", default="bench-results", help="directory for the JSON results")
    parser.add_argument("--connections", type=int, default=32, help="non-streaming connections")
    parser.add_argument("--streams", type=int, help="concurrent streams (default 1000; 0: none)")
    parser.add_argument("--litellm", metavar="BIN", help="LiteLLM's `litellm` binary: a peer")
    parser.add_argument(
        "--only",
        metavar="NAME,...",
        help="these scenarios only (with the pass-through ones their ratios divide by)",
    )
    args = parser.parse_args(argv)
    seconds = 1.0 if args.quick else args.duration
    rounds = 1 if args.quick else max(1, args.rounds)
    count = args.streams if args.streams is not None else (100 if args.quick else 1000)
    chunks, delay_ms = 30, 25.0
    if shutil.which("taskset") and (os.cpu_count() or 1) >= 2:
        os.sched_setaffinity(0, {int(bench.LOAD_CPU)})  # the stream clients stay off CPU 0
    results: dict[str, Any] = {
        "machine": bench.machine(),
        "settings": {
            "seconds": seconds,
            "rounds": rounds,
            "connections": args.connections,
            "streams": count,
            "stream_chunks": chunks,
            "chunk_delay_ms": delay_ms,
            "request_log": False,
        },
    }
    scenarios = selected(args.only.split(",")) if args.only else list(SCENARIOS)
    if args.litellm:
        scenarios.append(LITELLM)
        results["litellm_version"] = litellm_version(args.litellm)
    tmp = Path(tempfile.mkdtemp(prefix="llm-proxy-protocols-bench-"))
    with servers(tmp, chunks, delay_ms, args.litellm) as procs:
        time.sleep(0.5)
        load_runs = measure_load(procs, scenarios, tmp, args.connections, seconds, rounds)
        results["load"] = {
            name: {**bench._median_run(runs), "rounds": [asdict(r) for r in runs]}
            for name, runs in load_runs.items()
        }
        streamed = [s for s in scenarios if s.target == "llm-proxy"]
        stream_runs = measure_streams(procs, streamed, tmp, count, chunks, rounds) if count else {}
        results["streams"] = {name: median_stream(runs) for name, runs in stream_runs.items()}
    shutil.rmtree(tmp, ignore_errors=True)  # kept after a failure: the servers' logs are there
    results["ratios"] = ratios(results)
    report(results)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"protocols-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(results, indent=2))
    print(f"\nresults: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
