"""The tracing benchmark's judgement (`tests.perf.tracing_bench`), without running it: the
client's header, the verdict on what was exported, and the ratios held to the issue's bounds."""

from __future__ import annotations

from typing import Any

from llm_proxy.observe.tracing.context import parse_traceparent
from tests.perf import tracing_bench


def test_the_clients_traceparent_is_valid_and_sent_only_when_asked() -> None:
    by_name = {s.name: s for s in tracing_bench.SCENARIOS}
    parent = parse_traceparent(by_name["on-traceparent"].headers()["traceparent"])
    assert parent is not None and parent.trace_id == tracing_bench.TRACE_ID
    assert "traceparent" in by_name["off-traceparent"].headers()
    assert "traceparent" not in by_name["on"].headers()
    assert "traceparent" not in by_name["off"].headers()


def test_a_tracing_scenario_without_spans_makes_the_run_invalid() -> None:
    def sent(spans: int, in_trace: int = 0, requests: int = 1) -> dict[str, int]:
        return {
            "requests": requests,
            "bytes": 100 * requests,
            "spans": spans,
            "spans_in_trace": in_trace,
            "undecodable": 0,
        }

    nothing = sent(0, requests=0)
    good = {"off": nothing, "off-traceparent": nothing, "on": sent(4), "on-traceparent": sent(4, 4)}
    assert tracing_bench.problems(good) == {}
    assert tracing_bench.problems({**good, "on": nothing}) == {
        "on": "no spans exported (the sink received nothing)"
    }
    assert tracing_bench.problems({**good, "on-traceparent": sent(4, 0)}) == {
        "on-traceparent": "no exported span continues the client's trace"
    }


def results(cpu: dict[str, tuple[float, float]], errors: int = 0) -> dict[str, Any]:
    """Figures as `main` gathers them: CPU ms/req at 32 and 128 connections per scenario."""
    return {
        "load": {
            name: {"32": {"cpu_ms_per_request": at32}, "128": {"cpu_ms_per_request": at128}}
            for name, (at32, at128) in cpu.items()
        },
        "streams": {
            name: {"streams": 1000, "errors": errors, "cpu_ms_per_stream": 2.0} for name in cpu
        },
        "problems": {},
    }


def test_tracing_on_is_held_to_a_tenth_more_cpu_per_request() -> None:
    figures = results(
        {
            "off": (0.300, 0.400),
            "off-traceparent": (0.303, 0.404),
            "on": (0.327, 0.448),  # 1.09x, 1.12x
            "on-traceparent": (0.300, 0.400),
        },
        errors=1,
    )
    checked = {c["ratio"]: c for c in tracing_bench.ratios(figures)}
    assert checked["CPU/req @32 on ÷ off"]["met"] is True
    assert checked["CPU/req @128 on ÷ off"]["met"] is False
    assert round(checked["CPU/req @128 on ÷ off"]["value"], 3) == 1.12
    assert checked["CPU/req @32 off-traceparent ÷ off"]["met"] is None  # shown, not judged
    assert checked["stream errors on, 1000 streams"]["met"] is False
    figures["problems"] = {"on": "no spans exported (the sink received nothing)"}
    checked = {c["ratio"]: c for c in tracing_bench.ratios(figures)}
    assert checked["CPU/req @128 on ÷ off"]["met"] is None
    assert checked["stream errors on, 1000 streams"]["met"] is None
    assert checked["CPU/req @32 on-traceparent ÷ off"]["met"] is True
