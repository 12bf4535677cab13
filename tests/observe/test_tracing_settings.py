"""The tracing plan from the `tracing:` section and the standard OTEL_* variables
(llm_proxy.observe.tracing.settings): what wins, the defaults, and clear errors."""

from __future__ import annotations

import pytest

from llm_proxy.config.issues import ConfigError
from llm_proxy.config.model import TracingSettings
from llm_proxy.config.validate import parse_config
from llm_proxy.observe.tracing.settings import resolve

FILE = TracingSettings(
    endpoint="http://file-collector:4318",
    headers=(("x-tenant", "from-file"), ("authorization", "Bearer file-secret")),
    service_name="gateway-from-file",
    resource_attributes=(("deployment.environment", "staging"),),
    sampler="parentbased_traceidratio",
    sampler_arg=0.5,
)


def test_off_without_an_endpoint_and_when_disabled() -> None:
    assert resolve(TracingSettings(), {}) is None
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}
    assert resolve(TracingSettings(), env) is not None
    assert resolve(TracingSettings(), {**env, "OTEL_SDK_DISABLED": "true"}) is None
    assert resolve(TracingSettings(), {**env, "OTEL_TRACES_EXPORTER": "none"}) is None
    assert resolve(TracingSettings(enabled=False), env) is None
    plan = resolve(TracingSettings(enabled=True), {})  # on, to OTLP's default endpoint
    assert plan is not None and plan.endpoint == "http://localhost:4318/v1/traces"


def test_the_file_alone() -> None:
    plan = resolve(FILE, {})
    assert plan is not None
    assert plan.endpoint == "http://file-collector:4318/v1/traces"
    assert (plan.protocol, plan.compression, plan.timeout) == ("http/protobuf", "none", 10.0)
    assert dict(plan.headers) == {"x-tenant": "from-file", "authorization": "Bearer file-secret"}
    attributes = plan.resource.attributes
    assert attributes["service.name"] == "gateway-from-file"
    assert attributes["deployment.environment"] == "staging"
    assert attributes["telemetry.sdk.name"] == "llm-proxy"
    assert (plan.sampler.name, plan.sampler.ratio) == ("parentbased_traceidratio", 0.5)
    assert (plan.queue_size, plan.batch_size, plan.flush_interval) == (2048, 512, 5.0)
    assert "file-secret" not in repr(plan) and "file-secret" not in plan.describe()


def test_the_standard_variables_win_over_the_file() -> None:
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://env-collector:4318/",
        "OTEL_EXPORTER_OTLP_HEADERS": "x-tenant=env%20tenant,x-other=1",
        "OTEL_EXPORTER_OTLP_TRACES_HEADERS": "x-other=2",
        "OTEL_EXPORTER_OTLP_TIMEOUT": "2500",
        "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION": "none",
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json",
        "OTEL_SERVICE_NAME": "gateway-env",
        "OTEL_RESOURCE_ATTRIBUTES": "service.name=ignored,team=ml%2Cplatform",
        "OTEL_TRACES_SAMPLER": "traceidratio",
        "OTEL_TRACES_SAMPLER_ARG": "0.25",
        "OTEL_BSP_SCHEDULE_DELAY": "200",
        "OTEL_BSP_MAX_QUEUE_SIZE": "100",
        "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "10",
    }
    plan = resolve(FILE, env)
    assert plan is not None
    assert plan.endpoint == "http://env-collector:4318/v1/traces"
    assert plan.headers["x-tenant"] == "env tenant" and plan.headers["x-other"] == "2"
    assert plan.headers["authorization"] == "Bearer file-secret"  # merged, not replaced
    assert (plan.timeout, plan.compression, plan.protocol) == (2.5, "none", "http/json")
    assert plan.resource.attributes["service.name"] == "gateway-env"  # the name variable wins
    assert plan.resource.attributes["team"] == "ml,platform"
    assert (plan.sampler.name, plan.sampler.ratio) == ("traceidratio", 0.25)
    assert (plan.flush_interval, plan.queue_size, plan.batch_size) == (0.2, 100, 10)
    traces = resolve(FILE, {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "https://t.example/x"})
    assert traces is not None and traces.endpoint == "https://t.example/x"  # used as it is


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"OTEL_SDK_DISABLED": "maybe"}, "OTEL_SDK_DISABLED must be true or false"),
        ({"OTEL_TRACES_EXPORTER": "zipkin"}, "OTEL_TRACES_EXPORTER must be otlp or none"),
        ({"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, "gRPC is not supported"),
        ({"OTEL_EXPORTER_OTLP_COMPRESSION": "br"}, "must be gzip or none"),
        ({"OTEL_EXPORTER_OTLP_TIMEOUT": "soon"}, "OTEL_EXPORTER_OTLP_TIMEOUT must be"),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "collector:4318"}, "must be an http:// or https://"),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://u:p@c:4318"}, "must not contain credentials"),
        ({"OTEL_EXPORTER_OTLP_HEADERS": "novalue"}, "key=value pairs"),
        ({"OTEL_TRACES_SAMPLER": "sometimes"}, "unknown sampler"),
        ({"OTEL_TRACES_SAMPLER_ARG": "1.5"}, "from 0 to 1"),
        ({"OTEL_BSP_MAX_QUEUE_SIZE": "-1"}, "OTEL_BSP_MAX_QUEUE_SIZE must be a positive"),
    ],
)
def test_a_bad_variable_is_named(env: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        resolve(TracingSettings(), {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", **env})


def test_a_header_value_is_never_quoted_in_an_error() -> None:
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_EXPORTER_OTLP_HEADERS": "k=a%0Ab"}
    with pytest.raises(ValueError, match="unprintable") as caught:
        resolve(TracingSettings(), env)
    assert "a\nb" not in str(caught.value) and "'k'" in str(caught.value)


def test_the_section_is_validated_naming_the_field() -> None:
    config = parse_config(
        {
            "tracing": {
                "endpoint": "http://c:4318",
                "headers": {"x-honeycomb-team": "secret-value"},
                "protocol": "http/json",
                "sampler": "parentbased_traceidratio",
                "sampler_arg": 0.1,
                "capture_content": True,
                "resource_attributes": {"deployment.environment": "prod", "replica": 3},
            }
        }
    )
    tracing = config.tracing
    assert tracing.headers == (("x-honeycomb-team", "secret-value"),)
    assert tracing.resource_attributes == (("deployment.environment", "prod"), ("replica", "3"))
    assert "secret-value" not in repr(config)
    for bad, where in [
        ({"protocol": "grpc"}, "tracing.protocol"),
        ({"endpoint": "c:4318"}, "tracing.endpoint"),
        ({"sampler": "sometimes"}, "tracing.sampler"),
        ({"sampler_arg": 2}, "tracing.sampler_arg"),
        ({"headers": {"bad name": "v"}}, "tracing.headers"),
        ({"headers": {"x-key": "has space"}}, "tracing.headers['x-key']"),
        ({"timeout_secs": 0}, "tracing.timeout_secs"),
        ({"colour": "blue"}, "tracing.colour"),
    ]:
        with pytest.raises(ConfigError) as caught:
            parse_config({"tracing": bad})
        text = str(caught.value)
        assert where in text, text
        assert "has space" not in text
