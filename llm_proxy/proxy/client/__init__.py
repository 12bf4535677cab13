"""The upstream HTTP/1.1 client: pooled keep-alive connections on raw asyncio, responses parsed
by httptools (llhttp, in C). httpcore's `_async/` is the model for the cut:

    target.py         a URL compiled once per snapshot: request line, pool key, TLS context
    http11.py         one connection: its named states, sending, parsing the answer
    response.py       `Response`: the answer's head, and its body as the reader takes it
    pool.py           `Client`: the idle pool per origin, the per-origin cap, the re-send rule
    connect.py        DNS cache, Happy Eyeballs, the CONNECT tunnel, TLS
    forward_proxy.py  which forward proxy a URL goes through (the environment), CONNECT
    errors.py         one `UpstreamError` subclass per cause, each with a metric-safe `kind`

Why not `aiohttp.ClientSession`: its per-request machinery (URL and header merging, cookie and
proxy handling, trace hooks, timer contexts, payload registry, request/response objects) costs
about as much CPU as the whole bare forwarder the benchmark compares against, whatever options
it is given (measured: a tuned session gains ~1%). A proxy needs far less. Here a request is one
`writelines` of bytes compiled at config time plus the forwarded headers and the body, and one
future that the parser completes; deadlines are single timer handles, not context managers.

Importers use the names below, from this package.
"""

from llm_proxy.proxy.client.errors import (
    ClientClosed,
    ConnectError,
    ConnectTimeout,
    Disconnected,
    FirstByteTimeout,
    PoolTimeout,
    ProtocolError,
    ReadTimeout,
    UpstreamError,
    UpstreamTimeout,
)
from llm_proxy.proxy.client.forward_proxy import proxy_from_env
from llm_proxy.proxy.client.http11 import StreamedBody
from llm_proxy.proxy.client.pool import Client
from llm_proxy.proxy.client.response import HIGH_WATER, Response
from llm_proxy.proxy.client.target import Target, target

__all__ = [
    "HIGH_WATER",
    "Client",
    "ClientClosed",
    "ConnectError",
    "ConnectTimeout",
    "Disconnected",
    "FirstByteTimeout",
    "PoolTimeout",
    "ProtocolError",
    "ReadTimeout",
    "Response",
    "StreamedBody",
    "Target",
    "UpstreamError",
    "UpstreamTimeout",
    "proxy_from_env",
    "target",
]
