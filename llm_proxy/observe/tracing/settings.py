"""What tracing does, from the `tracing:` section and the standard OpenTelemetry environment
variables, resolved once at startup (`resolve`). A variable that is set wins over the file's
field of the same meaning, as every OpenTelemetry SDK reads them (an operator, or the
OpenTelemetry Operator in Kubernetes, injects them into any service):

    OTEL_SDK_DISABLED                   true: no tracing at all
    OTEL_TRACES_EXPORTER                otlp (default) or none
    OTEL_EXPORTER_OTLP_ENDPOINT         base URL, /v1/traces added    tracing.endpoint
    OTEL_EXPORTER_OTLP_TRACES_ENDPOINT  full URL                      tracing.traces_endpoint
    OTEL_EXPORTER_OTLP_[TRACES_]PROTOCOL     http/protobuf, http/json tracing.protocol
    OTEL_EXPORTER_OTLP_[TRACES_]HEADERS      k=v,k2=v2 (%-decoded)    tracing.headers
    OTEL_EXPORTER_OTLP_[TRACES_]TIMEOUT      milliseconds             tracing.timeout_secs
    OTEL_EXPORTER_OTLP_[TRACES_]COMPRESSION  gzip or none             tracing.compression
    OTEL_SERVICE_NAME                   service.name                  tracing.service_name
    OTEL_RESOURCE_ATTRIBUTES            k=v,k2=v2 (%-decoded)         tracing.resource_attributes
    OTEL_TRACES_SAMPLER, _ARG           the sampler and its ratio     tracing.sampler, _arg
    OTEL_BSP_SCHEDULE_DELAY             ms between exports            tracing.flush_interval_secs
    OTEL_BSP_MAX_QUEUE_SIZE             requests waiting              tracing.queue_size
    OTEL_BSP_MAX_EXPORT_BATCH_SIZE      requests per export           tracing.batch_size

The signal-specific `..._TRACES_...` variable wins over the general one; headers merge, the
traces-specific value winning per name. A bad value is a ValueError naming the variable or the
field (never quoting a header's value: it may be a key). Header values never appear in a repr.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final
from urllib.parse import unquote, urlsplit

from llm_proxy import __version__
from llm_proxy.config.model import TracingSettings
from llm_proxy.config.sections import TRACING_COMPRESSIONS, TRACING_PROTOCOLS
from llm_proxy.observe.tracing.context import Sampler
from llm_proxy.observe.tracing.model import Attributes, Resource

DEFAULT_ENDPOINT: Final = "http://localhost:4318"  # the OTLP/HTTP default
TRACES_PATH: Final = "/v1/traces"
DEFAULT_SERVICE: Final = "llm-proxy"
_TRUE: Final = frozenset({"true", "1", "yes"})
_FALSE: Final = frozenset({"false", "0", "no", ""})


@dataclass(frozen=True, slots=True)
class TracingPlan:
    """Resolved: where spans go and how, and which requests are sampled."""

    endpoint: str  # the full traces URL
    protocol: str  # http/protobuf or http/json
    headers: Mapping[str, str] = field(repr=False)
    compression: str  # gzip or none
    timeout: float  # seconds per export request
    resource: Resource
    sampler: Sampler = field(compare=False)
    capture_content: bool
    max_content_bytes: int
    queue_size: int
    batch_size: int
    flush_interval: float

    def describe(self) -> str:
        """One line for the startup log and check-config (no header values)."""
        names = ", ".join(sorted(self.headers)) or "none"
        ratio = (
            ""
            if self.sampler.name.endswith(("always_on", "always_off"))
            else (f" {self.sampler.ratio:g}")
        )
        return (
            f"{self.endpoint} ({self.protocol}, {self.compression}), sampler "
            f"{self.sampler.name}{ratio}, headers: {names}, content "
            f"{'captured' if self.capture_content else 'not captured'}"
        )


def resolve(file: TracingSettings, environ: Mapping[str, str] | None = None) -> TracingPlan | None:
    """The tracing plan, None when tracing is off (disabled, or no endpoint anywhere)."""
    env = os.environ if environ is None else environ
    if _flag(env, "OTEL_SDK_DISABLED"):
        return None
    exporter = env.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporter not in ("", "otlp", "none"):
        raise ValueError(
            f"OTEL_TRACES_EXPORTER must be otlp or none, got {exporter!r} "
            "(the proxy exports OTLP over HTTP only)"
        )
    if exporter == "none" or file.enabled is False:
        return None
    endpoint = _endpoint(file, env)
    if endpoint is None:
        if not file.enabled:
            return None
        endpoint = DEFAULT_ENDPOINT + TRACES_PATH
    protocol = _signal(env, "PROTOCOL") or file.protocol or "http/protobuf"
    if protocol not in TRACING_PROTOCOLS:
        hint = " (gRPC is not supported: use the collector's OTLP/HTTP port, 4318)"
        raise ValueError(
            f"OTEL_EXPORTER_OTLP_PROTOCOL must be http/protobuf or http/json, got {protocol!r}"
            + (hint if protocol == "grpc" else "")
        )
    compression = (_signal(env, "COMPRESSION") or file.compression or "none").lower()
    if compression not in TRACING_COMPRESSIONS:
        raise ValueError(
            f"OTEL_EXPORTER_OTLP_COMPRESSION must be gzip or none, got {compression!r}"
        )
    timeout_ms = _signal(env, "TIMEOUT")
    timeout = (
        _number(timeout_ms, "OTEL_EXPORTER_OTLP_TIMEOUT") / 1000
        if timeout_ms
        else file.timeout_secs or 10.0
    )
    headers = dict(file.headers)
    headers.update(_pairs(env.get("OTEL_EXPORTER_OTLP_HEADERS", ""), "OTEL_EXPORTER_OTLP_HEADERS"))
    headers.update(
        _pairs(
            env.get("OTEL_EXPORTER_OTLP_TRACES_HEADERS", ""), "OTEL_EXPORTER_OTLP_TRACES_HEADERS"
        )
    )
    for name, value in headers.items():
        if not value.isprintable() or "\r" in value or "\n" in value or not name.strip():
            raise ValueError(f"the export header {name!r} has an unprintable name or value")
    return TracingPlan(
        endpoint=endpoint,
        protocol=protocol,
        headers=headers,
        compression=compression,
        timeout=timeout,
        resource=resource(file, env),
        sampler=sampler(file, env),
        capture_content=file.capture_content,
        max_content_bytes=file.max_content_bytes,
        queue_size=_int(env, "OTEL_BSP_MAX_QUEUE_SIZE", file.queue_size, 2048),
        batch_size=_int(env, "OTEL_BSP_MAX_EXPORT_BATCH_SIZE", file.batch_size, 512),
        flush_interval=(
            _number(env["OTEL_BSP_SCHEDULE_DELAY"], "OTEL_BSP_SCHEDULE_DELAY") / 1000
            if env.get("OTEL_BSP_SCHEDULE_DELAY", "").strip()
            else file.flush_interval_secs or 5.0
        ),
    )


def sampler(file: TracingSettings, env: Mapping[str, str]) -> Sampler:
    name = env.get("OTEL_TRACES_SAMPLER", "").strip().lower() or file.sampler
    name = name or "parentbased_always_on"
    raw_arg = env.get("OTEL_TRACES_SAMPLER_ARG", "").strip()
    arg = _number(raw_arg, "OTEL_TRACES_SAMPLER_ARG", zero_ok=True) if raw_arg else None
    if arg is None:
        arg = file.sampler_arg if file.sampler_arg is not None else 1.0
    try:
        return Sampler(name, arg)
    except ValueError as exc:
        raise ValueError(f"OTEL_TRACES_SAMPLER / tracing.sampler: {exc}") from None


def resource(file: TracingSettings, env: Mapping[str, str]) -> Resource:
    """The resource every span is exported with: the SDK's attributes, a per-process
    `service.instance.id` (instances behind one port stay apart), the file's attributes, then
    OTEL_RESOURCE_ATTRIBUTES, then the service name."""
    attributes: Attributes = {
        "telemetry.sdk.name": "llm-proxy",
        "telemetry.sdk.language": "python",
        "telemetry.sdk.version": __version__,
        "service.version": __version__,
        "service.instance.id": str(uuid.uuid4()),
        "host.name": socket.gethostname(),
        "process.pid": os.getpid(),
    }
    attributes.update(dict(file.resource_attributes))
    attributes.update(_pairs(env.get("OTEL_RESOURCE_ATTRIBUTES", ""), "OTEL_RESOURCE_ATTRIBUTES"))
    service = env.get("OTEL_SERVICE_NAME", "").strip() or file.service_name
    if service:
        attributes["service.name"] = service
    attributes.setdefault("service.name", DEFAULT_SERVICE)
    return Resource(attributes, "llm-proxy", __version__)


def _endpoint(file: TracingSettings, env: Mapping[str, str]) -> str | None:
    traces = env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "").strip()
    if traces:
        return _url(traces, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    base = env.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip()
    if base:
        return _url(base, "OTEL_EXPORTER_OTLP_ENDPOINT").rstrip("/") + TRACES_PATH
    if file.traces_endpoint:
        return _url(file.traces_endpoint, "tracing.traces_endpoint")
    if file.endpoint:
        return _url(file.endpoint, "tracing.endpoint").rstrip("/") + TRACES_PATH
    return None


def _url(value: str, name: str) -> str:
    try:
        parts = urlsplit(value)
        _ = parts.port
    except ValueError:
        raise ValueError(f"{name} is not a valid URL") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{name} must be an http:// or https:// URL")
    if parts.username is not None or parts.password is not None:
        raise ValueError(f"{name} must not contain credentials (use the headers)")
    return value


def _signal(env: Mapping[str, str], what: str) -> str | None:
    """OTEL_EXPORTER_OTLP_TRACES_<what>, else OTEL_EXPORTER_OTLP_<what>."""
    value = env.get(f"OTEL_EXPORTER_OTLP_TRACES_{what}", "").strip()
    return value or env.get(f"OTEL_EXPORTER_OTLP_{what}", "").strip() or None


def _pairs(raw: str, name: str) -> dict[str, str]:
    """`k=v,k2=v2`, each side percent-decoded (the W3C Baggage form OTEL_* lists use)."""
    out: dict[str, str] = {}
    for item in raw.split(","):
        if not item.strip():
            continue
        key, eq, value = item.partition("=")
        key = unquote(key.strip())
        if not eq or not key:
            raise ValueError(f"{name} must be a list of key=value pairs separated by commas")
        out[key] = unquote(value.strip())
    return out


def _flag(env: Mapping[str, str], name: str) -> bool:
    value = env.get(name, "").strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError(f"{name} must be true or false, got {env[name]!r}")


def _number(raw: str, name: str, *, zero_ok: bool = False) -> float:
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not (value > 0 or (zero_ok and value == 0)) or value == float("inf"):
        raise ValueError(f"{name} must be a {'non-negative' if zero_ok else 'positive'} number")
    return value


def _int(env: Mapping[str, str], name: str, file_value: int | None, default: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return file_value or default
    if not raw.isdigit() or int(raw) < 1:
        raise ValueError(f"{name} must be a positive integer, got {raw!r}")
    return int(raw)
