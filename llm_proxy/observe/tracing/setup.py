"""Which span exporters run, and the sampler the request path decides with (`exporters`).

* OpenTelemetry (`tracing:` / OTEL_*): one OTLP/HTTP exporter, sampled by the plan's sampler.
* Langfuse (LANGFUSE_*): by default an OTLP exporter to Langfuse's OpenTelemetry endpoint,
  with the attributes Langfuse maps, thinned further by LANGFUSE_SAMPLE_RATE (by trace id, so
  the same requests in every instance); with LANGFUSE_EXPORT=ingestion the legacy batch
  ingestion exporter (a request-record sink of its own, sampled as before).

With Langfuse alone, every request is sampled (`always_on`: a client's unsampled traceparent
does not hide a request from Langfuse, as it never did); with both, the OpenTelemetry sampler
decides and Langfuse sees the sampled requests at its own rate.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Final

import structlog

from llm_proxy.config.model import TracingSettings
from llm_proxy.observe.langfuse import INGESTION_WARNING, LangfuseExporter, LangfuseSettings
from llm_proxy.observe.records import Sink
from llm_proxy.observe.tracing.context import Sampler
from llm_proxy.observe.tracing.exporter import OtlpExporter
from llm_proxy.observe.tracing.fast import encode_spans
from llm_proxy.observe.tracing.settings import TracingPlan, resource
from llm_proxy.observe.tracing.spans import build_spans

log = structlog.get_logger()

LANGFUSE_TIMEOUT_SECS: Final = 10.0


@dataclass(slots=True)
class Exporters:
    sampler: Sampler | None = None  # None: tracing off (no trace is started per request)
    sinks: list[Sink] = field(default_factory=list)
    otlp: list[OtlpExporter] = field(default_factory=list)  # for the span metrics
    capture_bytes: int = 0  # the content a record keeps for them (0: none)


def exporters(
    plan: TracingPlan | None,
    langfuse: LangfuseSettings | None,
    environ: Mapping[str, str] | None = None,
) -> Exporters:
    """The exporters of `plan` and `langfuse`; `environ` names Langfuse's service
    (OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES) when OpenTelemetry's export is off."""
    out = Exporters()
    if plan is not None:
        otel = OtlpExporter(
            name="otlp",
            endpoint=plan.endpoint,
            headers=plan.headers,
            protocol="http/json" if plan.protocol == "http/json" else "http/protobuf",
            compression="none" if plan.compression == "none" else "gzip",
            timeout=plan.timeout,
            resource=plan.resource,
            build=partial(build_spans, capture_content=plan.capture_content),
            encode=None if plan.capture_content else encode_spans,
            queue_size=plan.queue_size,
            batch_size=plan.batch_size,
            flush_interval=plan.flush_interval,
        )
        out.sampler = plan.sampler
        out.sinks.append(otel)
        out.otlp.append(otel)
        if plan.capture_content:
            out.capture_bytes = plan.max_content_bytes
    if langfuse is None:
        return out
    if langfuse.export == "ingestion":
        log.warning("langfuse_ingestion_api", warning=INGESTION_WARNING, host=langfuse.host)
        out.sinks.append(LangfuseExporter(langfuse))
    else:
        exporter = OtlpExporter(
            name="langfuse",
            endpoint=langfuse.otlp_url,
            headers={"Authorization": langfuse.authorization()},
            protocol="http/protobuf",
            compression="none",
            timeout=LANGFUSE_TIMEOUT_SECS,
            resource=plan.resource
            if plan is not None
            else resource(TracingSettings(), os.environ if environ is None else environ),
            build=partial(build_spans, capture_content=langfuse.capture_content, langfuse=True),
            sample_ratio=langfuse.sample_rate,
            flush_interval=langfuse.flush_interval,
        )
        out.sinks.append(exporter)
        out.otlp.append(exporter)
        if out.sampler is None:
            out.sampler = Sampler("always_on")
    return out
