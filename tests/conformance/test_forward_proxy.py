"""Forward proxies: an http upstream through a proxy that wants credentials, from the
provider's `proxy:` (absolute-form requests). https through a CONNECT tunnel from HTTPS_PROXY
is in test_tls.py, with a real TLS origin."""

from __future__ import annotations

import aiohttp

from tests.conformance.conftest import MODELS, assert_once, burst, seen
from tests.conformance.forward_proxy import ForwardProxy
from tests.conformance.servers import Server
from tests.helpers import ProxyFactory, make_config, provider


async def test_http_upstream_through_proxy_with_credentials(
    backend: Server, start_proxy: ProxyFactory, http: aiohttp.ClientSession
) -> None:
    forward = ForwardProxy("user", "p@ss")
    async with forward.running() as address:
        proxy_url = f"http://user:p%40ss@{address}"
        config = make_config(provider("up", backend.url + "/v1", MODELS, proxy=proxy_url))
        proxy = await start_proxy(config)
        ids = await burst(http, proxy, "via-proxy", 6, concurrent=False)
        ids += await burst(http, proxy, "via-proxy", 8, concurrent=True)
    assert forward.refused == 0
    # Every request went through the proxy, once, in absolute form, with the credentials.
    assert forward.requests == [f"POST {backend.url}/v1/chat/completions"] * len(ids)
    assert_once(await seen(http, backend.url), ids)
