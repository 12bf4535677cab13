"""W3C Trace Context parsing, id generation and sampling (llm_proxy.observe.tracing.context),
against the spec's own examples and its invalid cases."""

from __future__ import annotations

import pytest

from llm_proxy.observe.tracing.context import (
    Sampler,
    keeps,
    new_span_id,
    new_trace_id,
    parse_traceparent,
    parse_tracestate,
    start,
)

TRACE = "0af7651916cd43dd8448eb211c80319c"
SPAN = "b7ad6b7169203331"
VALID = f"00-{TRACE}-{SPAN}-01"


def test_a_valid_traceparent_is_read() -> None:
    parent = parse_traceparent(VALID)
    assert parent is not None
    assert (parent.trace_id, parent.span_id, parent.flags) == (TRACE, SPAN, 1)
    unsampled = parse_traceparent(f"00-{TRACE}-{SPAN}-00")
    assert unsampled is not None and unsampled.flags == 0
    assert parse_traceparent(f"  {VALID}\t") is not None  # optional whitespace around


@pytest.mark.parametrize(
    "value",
    [
        "",
        "garbage",
        VALID.upper(),  # upper-case hex is invalid
        f"ff-{TRACE}-{SPAN}-01",  # version ff is invalid
        f"00-{'0' * 32}-{SPAN}-01",  # all-zero trace id
        f"00-{TRACE}-{'0' * 16}-01",  # all-zero span id
        f"00-{TRACE}-{SPAN}-01-extra",  # version 00 has exactly four fields
        f"00-{TRACE[:-1]}-{SPAN}-01",
        f"00-{TRACE}-{SPAN}-1",
        f"00_{TRACE}-{SPAN}-01",
        f"0g-{TRACE}-{SPAN}-01",
        f"01-{TRACE}-{SPAN}-01x",  # a later version's extra fields follow a dash
    ],
)
def test_an_invalid_traceparent_is_ignored(value: str) -> None:
    assert parse_traceparent(value) is None


def test_a_later_version_is_read_by_its_first_four_fields() -> None:
    parent = parse_traceparent(f"cc-{TRACE}-{SPAN}-01-what-the-future-has")
    assert parent is not None and parent.trace_id == TRACE


def test_tracestate_is_kept_when_valid_and_dropped_whole_when_not() -> None:
    assert parse_tracestate(["rojo=00f067aa0ba902b7", "congo=t61rcWkgMzE"]) == (
        "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"
    )
    assert parse_tracestate(["rojo=1, congo=2 "]) == "rojo=1,congo=2"
    assert parse_tracestate(["tenant@system=x"]) == "tenant@system=x"
    assert parse_tracestate([""]) is None
    assert parse_tracestate(["Upper=1"]) is None  # keys are lower case
    assert parse_tracestate(["a=1,a=2"]) is None  # a key appears once
    assert parse_tracestate(["novalue"]) is None
    assert parse_tracestate(["a=b=c,"]) is None  # '=' is not allowed in a value
    assert parse_tracestate([",".join(f"k{i}=v" for i in range(33))]) is None  # > 32 members
    assert parse_tracestate(["k=" + "v" * 600]) is None  # > 512 characters


def test_new_ids_are_hex_of_the_right_length_and_distinct() -> None:
    traces = {new_trace_id() for _ in range(1000)}
    spans = {new_span_id() for _ in range(1000)}
    assert len(traces) == 1000 and len(spans) == 1000
    assert all(len(t) == 32 and int(t, 16) for t in traces)
    assert all(len(s) == 16 and int(s, 16) for s in spans)


def test_ratio_sampling_reads_the_lower_64_bits_like_opentelemetry() -> None:
    # TraceIdRatioBased: sampled when the trace id's lower 64 bits < ratio * 2^64.
    assert keeps("f" * 16 + "0" * 16, 0.5)
    assert not keeps("0" * 16 + "f" * 16, 0.5)
    assert keeps("0" * 16 + "7" + "f" * 15, 0.5)
    assert not keeps("0" * 16 + "8" + "0" * 15, 0.5)
    ids = [new_trace_id() for _ in range(4000)]
    kept = sum(keeps(t, 0.25) for t in ids)
    assert 800 < kept < 1200  # 1000 expected; far outside only if the ratio is wrong


def test_samplers_follow_their_names() -> None:
    sampled_parent = parse_traceparent(VALID)
    unsampled_parent = parse_traceparent(f"00-{TRACE}-{SPAN}-00")
    low = "0" * 32  # lower bits 0: kept by any ratio above 0
    high = "f" * 32  # kept only at ratio 1
    on, off = Sampler("always_on"), Sampler("always_off")
    assert on.sampled(high, unsampled_parent) and not off.sampled(low, sampled_parent)
    parent_on = Sampler("parentbased_always_on")
    assert parent_on.sampled(high, None)
    assert parent_on.sampled(high, sampled_parent)
    assert not parent_on.sampled(high, unsampled_parent)
    parent_ratio = Sampler("parentbased_traceidratio", 0.1)
    assert parent_ratio.sampled(low, None) and not parent_ratio.sampled(high, None)
    assert parent_ratio.sampled(high, sampled_parent)  # the caller decided
    ratio = Sampler("traceidratio", 0.1)
    assert not ratio.sampled(high, sampled_parent)  # not parent-based: the ratio decides
    with pytest.raises(ValueError, match="unknown sampler"):
        Sampler("sometimes")
    with pytest.raises(ValueError, match="from 0 to 1"):
        Sampler("traceidratio", 2.0)


def test_start_continues_a_clients_trace_or_starts_one() -> None:
    sampler = Sampler()
    trace = start(sampler, VALID, ["rojo=1"])
    assert (trace.trace_id, trace.parent_span_id, trace.trace_state) == (TRACE, SPAN, "rojo=1")
    assert trace.sampled and trace.span_id not in (SPAN, "0" * 16)
    line = trace.traceparent("00f067aa0ba902b7").decode()
    assert line == f"traceparent: 00-{TRACE}-00f067aa0ba902b7-01\r\ntracestate: rojo=1\r\n"
    fresh = start(sampler, "00-broken", ["rojo=1"])
    assert fresh.trace_id != TRACE and fresh.parent_span_id is None
    assert fresh.trace_state is None  # tracestate without a valid traceparent is ignored
    unsampled = start(sampler, f"00-{TRACE}-{SPAN}-00", None)
    assert not unsampled.sampled
    assert unsampled.traceparent(SPAN).endswith(b"-00\r\n")
