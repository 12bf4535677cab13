"""Client microbenchmark: CPU per request of the proxy's upstream client (`Client`), a tuned
`aiohttp.ClientSession` (one session, keep-alive pool) and `pyreqwest` (Rust reqwest, if
installed), against the same fast local server.

    python -m tests.perf.client_bench [--requests 3000] [--concurrency 1 32]

The server is a separate process (uvloop + httptools, a fixed 300-byte JSON answer), pinned to
the last CPU and the benchmark to the first when there are two, so only client work lands on the
measured process. CPU is the process's CPU time (all its threads: pyreqwest's runtime counts)
over the requests of a run, after a warm-up; everything on 127.0.0.1 and uvloop, the loop
`llm-proxy serve` runs on.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import uvloop

BODY = b'{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Say hello, briefly."}]}'
ANSWER_BODY = (
    b'{"id":"chatcmpl-1","object":"chat.completion","created":1700000000,"model":"gpt-4o-mini",'
    b'"choices":[{"index":0,"message":{"role":"assistant","content":"Hello!"},'
    b'"finish_reason":"stop"}],"usage":{"prompt_tokens":12,"completion_tokens":3,'
    b'"total_tokens":15}}'
)
ANSWER = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (
    len(ANSWER_BODY),
    ANSWER_BODY,
)
WARMUP = 300

Send = Callable[[], Awaitable[None]]


# --- the server (a child process) ---------------------------------------------------------


def serve(port: int) -> None:
    import httptools

    class Protocol(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport: Any = transport
            self.parser = httptools.HttpRequestParser(self)

        def data_received(self, data: bytes) -> None:
            self.parser.feed_data(data)

        def on_message_complete(self) -> None:
            self.transport.write(ANSWER)

    async def main() -> None:
        server = await asyncio.get_running_loop().create_server(Protocol, "127.0.0.1", port)
        await server.serve_forever()

    uvloop.run(main())


def start_server() -> tuple[subprocess.Popen[bytes], str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    argv = [sys.executable, "-m", "tests.perf.client_bench", "--serve", str(port)]
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL)
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) >= 2:
        os.sched_setaffinity(proc.pid, {cpus[-1]})
        os.sched_setaffinity(0, {cpus[0]})
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc, f"http://127.0.0.1:{port}/v1/chat/completions"
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise SystemExit("the benchmark server did not start")


# --- the clients --------------------------------------------------------------------------


async def ours(url: str) -> tuple[Send, Callable[[], Awaitable[None]]]:
    from yarl import URL

    from llm_proxy.proxy.client import Client, target

    client = Client()
    compiled = target(URL(url), "POST")
    headers = b"Content-Type: application/json\r\nAuthorization: Bearer sk-bench\r\n"

    async def send() -> None:
        resp = await client.request(compiled, headers, BODY, total_secs=10)
        assert resp.status == 200
        while await resp.read_chunk():
            pass

    return send, client.close


async def aiohttp_session(url: str) -> tuple[Send, Callable[[], Awaitable[None]]]:
    import aiohttp

    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=60),
        auto_decompress=False,
        skip_auto_headers=("User-Agent",),
    )
    headers = {"Content-Type": "application/json", "Authorization": "Bearer sk-bench"}

    async def send() -> None:
        async with session.post(url, data=BODY, headers=headers) as resp:
            assert resp.status == 200
            await resp.read()

    return send, session.close


async def pyreqwest_client(url: str) -> tuple[Send, Callable[[], Awaitable[None]]]:
    from pyreqwest.client import ClientBuilder

    client = ClientBuilder().build()

    async def send() -> None:
        request = (
            client.post(url)
            .header("Content-Type", "application/json")
            .header("Authorization", "Bearer sk-bench")
            .body_bytes(BODY)
            .build()
        )
        resp = await request.send()
        assert resp.status == 200
        await resp.bytes()

    async def close() -> None:
        await client.close()

    return send, close


CLIENTS: dict[str, Callable[[str], Awaitable[tuple[Send, Callable[[], Awaitable[None]]]]]] = {
    "llm-proxy Client": ours,
    "aiohttp.ClientSession": aiohttp_session,
    "pyreqwest": pyreqwest_client,
}


async def run(send: Send, requests: int, concurrency: int) -> tuple[float, float]:
    """(CPU µs per request, requests per second) for `requests` sent `concurrency` at a time."""

    async def worker(count: int) -> None:
        for _ in range(count):
            await send()

    share = requests // concurrency
    await asyncio.gather(*(worker(WARMUP // concurrency + 1) for _ in range(concurrency)))
    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(worker(share) for _ in range(concurrency)))
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    done = share * concurrency
    return cpu / done * 1e6, done / wall


async def bench(url: str, requests: int, levels: list[int]) -> list[tuple[str, int, str, str]]:
    rows = []
    for name, make in CLIENTS.items():
        try:
            send, close = await make(url)
        except ImportError as exc:
            rows.append((name, 0, f"skipped: {exc.name} is not installed", ""))
            continue
        try:
            for level in levels:
                cpu_us, rate = await run(send, requests, level)
                rows.append((name, level, f"{cpu_us:.1f}", f"{rate:,.0f}"))
        finally:
            await close()
    return rows


def machine() -> str:
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as info:
            model = next(ln.split(":", 1)[1].strip() for ln in info if ln.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return (
        f"{model}, {os.cpu_count()} CPUs; Python {platform.python_version()}, uvloop "
        f"{uvloop.__version__}; {platform.system()} {platform.release()}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=3000, help="per client and level")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve)
        return
    proc, url = start_server()
    try:
        rows = uvloop.run(bench(url, args.requests, args.concurrency))
    finally:
        proc.kill()
        proc.wait()
    print(machine())
    print(f"{args.requests} requests per row, after {WARMUP} warm-up; CPU = this process's")
    print(f"{'client':<24}{'concurrency':>12}{'CPU µs/request':>16}{'requests/s':>12}")
    for name, level, cpu_us, rate in rows:
        print(f"{name:<24}{level or '':>12}{cpu_us:>16}{rate:>12}")


if __name__ == "__main__":
    main()
