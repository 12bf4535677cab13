"""What holding a stream's first event (to fail over on an error event) costs a healthy stream:
time to first chunk through llm-proxy with failover possible (max_attempts 3: the first event
is held until complete) and impossible (max_attempts 1: relayed at once), same run, in turn.

    python -m tests.perf.hold [--streams 400]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

import aiohttp

from llm_proxy.app import create_app
from llm_proxy.testing.mock import MockOptions, create_mock_app
from tests.helpers import make_config, provider, serve


async def ttfc(http: aiohttp.ClientSession, url: str) -> float:
    body = {"model": "m", "stream": True, "mock_chunks": 5}
    started = time.perf_counter()
    async with http.post(url + "/v1/chat/completions", json=body) as resp:
        await resp.content.readany()
        elapsed = time.perf_counter() - started
        await resp.read()
    return elapsed


async def main(streams: int) -> None:
    async with serve(create_mock_app(MockOptions())) as mock:

        def app(attempts: int) -> aiohttp.web.Application:
            config = make_config(provider("a", mock + "/v1", {"m": None}), max_attempts=attempts)
            return create_app(config)

        async with serve(app(1)) as one, serve(app(3)) as three:
            urls = {
                "relay at once (max_attempts 1)": one,
                "first event held (max_attempts 3)": three,
            }
            samples: dict[str, list[float]] = {k: [] for k in urls}
            async with aiohttp.ClientSession() as http:
                for _ in range(streams):
                    for name, url in urls.items():  # interleaved: same conditions for both
                        samples[name].append(await ttfc(http, url))
    for name, values in samples.items():
        values.sort()
        p50 = statistics.median(values) * 1000
        p99 = values[int(len(values) * 0.99)] * 1000
        print(f"{name:<36} ttfc p50 {p50:.3f} ms  p99 {p99:.3f} ms")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--streams", type=int, default=400)
    asyncio.run(main(parser.parse_args().streams))
