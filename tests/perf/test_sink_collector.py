"""The tracing benchmark's OTLP sink (`tests.perf.sink_collector`) on loopback: exports counted
per proxy (requests, bytes as sent, spans, spans of the clients' trace), gzipped or not,
protobuf or JSON, each answered 200 at once, an unreadable one counted rather than refused."""

from __future__ import annotations

import gzip

import aiohttp
import orjson

from tests.helpers import serve
from tests.perf import tracing_bench
from tests.perf.sink_collector import PATH, SCENARIO_HEADER, count_protobuf, make_app

TRACE = bytes.fromhex(tracing_bench.TRACE_ID)
OTHER = bytes(range(16))


# A hand-made protobuf encoding: the sink must not trust our encoder, nor need the SDK.


def varint(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def field(number: int, payload: bytes) -> bytes:
    return varint(number << 3 | 2) + varint(len(payload)) + payload


def span(trace_id: bytes, name: str) -> bytes:
    # trace_id, span_id, name, kind (varint), start and end times (fixed64): every wire type
    # the walk must step over.
    return (
        field(1, trace_id)
        + field(2, b"\x01" * 8)
        + field(5, name.encode())
        + varint(6 << 3) + varint(2)
        + varint(7 << 3 | 1) + (1_700_000_000_000_000_000).to_bytes(8, "little")
        + varint(8 << 3 | 1) + (1_700_000_000_100_000_000).to_bytes(8, "little")
    )  # fmt: skip


def scope_spans(*spans: bytes) -> bytes:
    return field(1, field(1, b"llm-proxy")) + b"".join(field(2, s) for s in spans)


def request(*resource_spans: list[bytes]) -> bytes:
    resource = field(1, field(1, field(1, b"service.name")))
    return b"".join(
        field(1, resource + b"".join(field(2, ss) for ss in scopes)) for scopes in resource_spans
    )


async def stats(http: aiohttp.ClientSession, url: str) -> dict[str, object]:
    async with http.get(url + "/stats") as answer:
        assert answer.status == 200
        return dict(await answer.json())


async def test_a_gzipped_protobuf_export_is_counted_and_answered_empty(
    http: aiohttp.ClientSession,
) -> None:
    body = gzip.compress(
        request(
            [scope_spans(span(TRACE, "chat"), span(OTHER, "chat"))],
            [scope_spans(), scope_spans(span(TRACE, "attempt")), scope_spans(span(OTHER, "x"))],
        )
    )
    headers = {
        "Content-Type": "application/x-protobuf",
        "Content-Encoding": "gzip",
        SCENARIO_HEADER: "on",
    }
    async with serve(make_app(tracing_bench.TRACE_ID)) as url:
        assert await stats(http, url) == {"idle_secs": None, "tallies": {}}
        for _ in range(2):
            async with http.post(url + PATH, data=body, headers=headers) as answer:
                assert answer.status == 200
                assert answer.content_type == "application/x-protobuf"
                assert await answer.read() == b""
        found = await stats(http, url)
    assert found["tallies"] == {
        "on": {
            "requests": 2,
            "bytes": 2 * len(body),
            "spans": 8,
            "spans_in_trace": 4,
            "undecodable": 0,
            "decoded": 2,
        }
    }
    assert isinstance(found["idle_secs"], float)


async def test_a_json_export_is_counted_apart_per_proxy(http: aiohttp.ClientSession) -> None:
    body = orjson.dumps(
        {
            "resourceSpans": [
                {
                    "scopeSpans": [
                        {"spans": [{"traceId": TRACE.hex().upper()}, {"traceId": OTHER.hex()}]}
                    ]
                }
            ]
        }
    )
    async with serve(make_app(tracing_bench.TRACE_ID)) as url:
        for scenario in ("on", "on-traceparent"):
            async with http.post(
                url + PATH,
                data=body,
                headers={"Content-Type": "application/json", SCENARIO_HEADER: scenario},
            ) as answer:
                assert answer.status == 200
                assert await answer.json() == {}
        tallies = (await stats(http, url))["tallies"]
    expected = {"requests": 1, "bytes": len(body), "spans": 2, "spans_in_trace": 1}
    assert tallies == {
        name: {**expected, "undecodable": 0, "decoded": 1} for name in ("on", "on-traceparent")
    }


async def test_an_unreadable_export_is_answered_and_counted(http: aiohttp.ClientSession) -> None:
    # A field whose length runs past the body; then a body that claims gzip and is not.
    bodies = [(field(1, b"x" * 10)[:-3], {}), (b"not gzip", {"Content-Encoding": "gzip"})]
    async with serve(make_app()) as url:
        for body, extra in bodies:
            headers = {"Content-Type": "application/x-protobuf", **extra}
            async with http.post(url + PATH, data=body, headers=headers) as answer:
                assert answer.status == 200
        tallies = (await stats(http, url))["tallies"]
    assert tallies == {
        "-": {
            "requests": 2,
            "bytes": sum(len(body) for body, _ in bodies),
            "spans": 0,
            "spans_in_trace": 0,
            "undecodable": 2,
            "decoded": 2,
        }
    }


async def test_an_export_without_spans_leaves_the_sink_idle(http: aiohttp.ClientSession) -> None:
    headers = {"Content-Type": "application/x-protobuf"}
    bodies = [b"", request([scope_spans()])]
    async with serve(make_app()) as url:
        for body in bodies:
            async with http.post(url + PATH, data=body, headers=headers) as answer:
                assert answer.status == 200
        found = await stats(http, url)
    assert found["idle_secs"] is None
    assert found["tallies"] == {
        "-": {
            "requests": 2,
            "bytes": len(bodies[1]),
            "spans": 0,
            "spans_in_trace": 0,
            "undecodable": 0,
            "decoded": 2,
        }
    }


async def test_with_sampling_only_every_nth_export_is_walked(
    http: aiohttp.ClientSession,
) -> None:
    """The benchmark's sink walks one export in N (the others are only counted), so that it
    takes little of the CPU it shares with the load generator."""
    headers = {"Content-Type": "application/x-protobuf", SCENARIO_HEADER: "on"}
    body = request([scope_spans()])
    async with serve(make_app(sample_every=3)) as url:
        for _ in range(7):
            async with http.post(url + PATH, data=body, headers=headers) as answer:
                assert answer.status == 200
        found = await stats(http, url)
    tally = found["tallies"]["on"]
    assert (tally["requests"], tally["decoded"]) == (7, 3)  # the 1st, 4th and 7th
    assert tally["spans"] == 3 * count_protobuf(body, b"")[0]
    assert isinstance(found["idle_secs"], float)
