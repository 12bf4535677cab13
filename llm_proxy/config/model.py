"""The configuration model: frozen dataclasses and defaults (pure, no I/O). Validation that
builds them lives beside it: `llm_proxy.config.validate.parse_config`."""

from __future__ import annotations

import dataclasses
import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal

DEFAULT_PORT: Final = 18000


DEFAULT_HOST: Final = "0.0.0.0"


DEFAULT_TIMEOUT_SECS: Final = 600.0


DEFAULT_MAX_BODY_MB: Final = 32.0


ProviderType = Literal["openai", "azure", "anthropic", "gemini", "vertex", "bedrock"]


# How a provider's api_key is sent: `Authorization: Bearer`, Azure's `api-key` header,
# Anthropic's `x-api-key` header, Google's `x-goog-api-key` header, or not at all.
AuthMode = Literal["bearer", "api-key", "x-api-key", "x-goog-api-key", "none"]


# The types whose calls are signed with cloud credentials (a Google access token, AWS SigV4)
# instead of carrying an api_key: `auth` is always "none" for them.
SIGNED_TYPES: Final = frozenset({"vertex", "bedrock"})


def default_auth(provider_type: ProviderType) -> AuthMode:
    """The `auth` a provider of this type gets when its config gives none: each upstream's
    own header (Azure's stays `bearer`, as it always was: its default predates `api-key`);
    "none" for the signed types (their credentials are not an api_key)."""
    if provider_type == "anthropic":
        return "x-api-key"
    if provider_type == "gemini":
        return "x-goog-api-key"
    return "none" if provider_type in SIGNED_TYPES else "bearer"


# Anthropic's Messages API: the base URL as the Anthropic SDK takes it (the proxy appends
# /v1/messages), and the `anthropic-version` sent when the client sends none.
ANTHROPIC_API_BASE: Final = "https://api.anthropic.com"


DEFAULT_ANTHROPIC_VERSION: Final = "2023-06-01"


# Anthropic requires max_tokens; an OpenAI client may give none.
DEFAULT_MAX_TOKENS: Final = 4096


# Google AI Studio's Gemini API: the root URL (the proxy appends /v1beta/models/...).
GEMINI_API_BASE: Final = "https://generativelanguage.googleapis.com"


# Vertex AI: the location a provider uses when its config names none.
DEFAULT_VERTEX_LOCATION: Final = "global"


def vertex_api_base(location: str) -> str:
    """Vertex AI's endpoint for `location` (the proxy appends /v1/projects/...)."""
    if location == "global":
        return "https://aiplatform.googleapis.com"
    return f"https://{location}-aiplatform.googleapis.com"


def bedrock_api_base(region: str) -> str:
    """Amazon Bedrock's runtime endpoint in `region` (the proxy appends /model/...)."""
    return f"https://bedrock-runtime.{region}.amazonaws.com"


# Where a credentials JSON's signed JWT (service_account) or refresh token (authorized_user)
# is exchanged for an access token when the JSON names no token_uri (gcloud's never does).
GOOGLE_TOKEN_URI: Final = "https://oauth2.googleapis.com/token"  # noqa: S105 (a URL)


@dataclass(frozen=True, slots=True)
class ModelRule:
    """One `model_mapping` entry: requested name or pattern -> upstream model name."""

    key: str
    target: str | None  # None: forward the requested name unchanged
    pattern: re.Pattern[str] | None  # None: an exact name


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Upstream timeouts in seconds; in a provider's settings None means "the global value"."""

    connect_timeout_secs: float | None = None  # TCP/TLS connect
    ttft_timeout_secs: float | None = None  # to the first byte (streams: first event)
    stream_idle_timeout_secs: float | None = None  # between two stream chunks
    request_timeout_secs: float | None = None  # the whole call, streams included


DEFAULT_TIMEOUTS: Final = Timeouts(
    connect_timeout_secs=10.0,
    ttft_timeout_secs=None,  # None globally: bounded by request_timeout_secs only
    stream_idle_timeout_secs=120.0,
    request_timeout_secs=DEFAULT_TIMEOUT_SECS,
)


TIMEOUT_KEYS: Final = frozenset(f.name for f in dataclasses.fields(Timeouts))


@dataclass(frozen=True, slots=True)
class HealthCheck:
    interval_secs: float
    model: str | None = None  # None: GET /models; else a 1-token chat completion


@dataclass(frozen=True, slots=True)
class CircuitBreaker:
    failure_threshold: int = 3  # consecutive failures that eject a provider
    cooldown_secs: float = 5.0  # first ejection; doubles on each repeated ejection
    max_cooldown_secs: float = 300.0


@dataclass(frozen=True, slots=True)
class Price:
    """US dollars per million tokens."""

    input_per_mtok: float = 0.0
    output_per_mtok: float = 0.0

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        return (
            prompt_tokens * self.input_per_mtok + completion_tokens * self.output_per_mtok
        ) / 1e6


# (model name or pattern, its compiled pattern or None for an exact name, the price)
Pricing = tuple[tuple[str, "re.Pattern[str] | None", Price], ...]


def price_for(pricing: Pricing, model: str) -> Price | None:
    """The price of `model`: an exact name first, then the first pattern that matches."""
    for name, pattern, price in pricing:
        if pattern is None and name == model:
            return price
    for _, pattern, price in pricing:
        if pattern is not None and pattern.fullmatch(model):
            return price
    return None


@dataclass(frozen=True, slots=True)
class Provider:
    name: str
    api_base: str
    api_key: str = field(repr=False)
    weight: int = 1
    model_mapping: tuple[ModelRule, ...] = ()
    verify_ssl: bool | None = None  # None: use the global setting
    inject_stream_usage: bool | None = None  # None: use the global setting
    timeouts: Timeouts = Timeouts()  # overrides of the global timeouts
    health_check: HealthCheck | None = None  # None: the global setting (if any)
    # Sent as OpenAI-Organization / OpenAI-Project. Clients cannot set these (they would pick
    # the provider account's organization), and the upstream's are not shown to clients
    # unless set here. For provider_type vertex, `project` is the Google Cloud project (part
    # of the URL, never a header), and `organization` is refused.
    organization: str | None = None
    project: str | None = None
    # A forward proxy for this provider: an http:// URL, False for none (ignore the
    # environment), None for the environment's (when trust_env).
    proxy: str | Literal[False] | None = field(default=None, repr=False)
    pricing: Pricing = ()  # overrides the global prices for this provider's models
    # "openai": every path is appended to api_base. "azure": api_base is the resource
    # endpoint, the upstream model name (after model_mapping) is the deployment.
    # "anthropic": the upstream speaks Anthropic's Messages API; api_base is the base the
    # Anthropic SDK takes (https://api.anthropic.com), the proxy appends /v1/messages.
    # "gemini": Google AI Studio's root URL (GEMINI_API_BASE), the proxy appends
    # /v1beta/models/MODEL:ACTION. "vertex": Vertex AI's endpoint for `location`
    # (vertex_api_base), the model a publisher model id (gemini-2.5-pro,
    # claude-sonnet-4@20250514). "bedrock": the runtime endpoint of `region`
    # (bedrock_api_base), the model a Bedrock model id or inference profile. The three always
    # have an api_base once parsed: the type's default when the config gives none.
    provider_type: ProviderType = "openai"
    # How api_key is sent (see AuthMode); when not configured, `default_auth(provider_type)`.
    auth: AuthMode = "bearer"
    # Header lines every call carries, (name as configured, value); clients cannot set these.
    # Values may be secrets: shown masked unless the name is known to carry none.
    headers: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    # Added to every upstream URL. Values may be secrets (`?key=`): masked unless public.
    query_params: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    # provider_type anthropic only: the `anthropic-version` header sent when the client sent
    # none (an Anthropic client's own is forwarded unchanged; OpenAI clients never send one).
    anthropic_version: str = DEFAULT_ANTHROPIC_VERSION
    # The max_tokens a translated request carries when its client gave none (an Anthropic
    # upstream requires one).
    default_max_tokens: int = DEFAULT_MAX_TOKENS
    # A cap on the max_tokens a translated request carries, whoever chose it (the client or
    # default_max_tokens): below default_max_tokens it lowers that too. None: no cap.
    max_output_tokens: int | None = None
    # provider_type vertex: the Vertex AI location ("global" or a region such as us-east5;
    # "global" when not configured, None for the other types), and the Google credentials:
    # a service-account or authorized_user JSON file, or that JSON as a value; neither means
    # application default credentials. `project` is the Google Cloud project (None: the
    # credentials JSON's project_id).
    location: str | None = None
    credentials_file: str | None = None
    credentials_json: str | None = field(default=None, repr=False)
    # provider_type bedrock: the AWS region, and the credentials that sign each call (SigV4):
    # static keys (a session token only with them), or a profile of the shared AWS files, or
    # none of these (the environment's, then the default profile).
    region: str | None = None
    aws_access_key_id: str | None = field(default=None, repr=False)
    aws_secret_access_key: str | None = field(default=None, repr=False)
    aws_session_token: str | None = field(default=None, repr=False)
    aws_profile: str | None = None

    @property
    def request_timeout_secs(self) -> float | None:
        return self.timeouts.request_timeout_secs


@dataclass(frozen=True, slots=True)
class RateLimit:
    requests_per_second: float
    burst_size: int


@dataclass(frozen=True, slots=True)
class MasterKey:
    name: str
    key: str = field(repr=False)  # plaintext; "" when only the hash is known
    rate_limit: RateLimit | None = None
    allowed_models: tuple[str, ...] | None = None  # None: every model
    enabled: bool = True
    tokens_per_minute: int | None = None
    key_sha256: bytes | None = field(default=None, repr=False)  # the hash, when given instead
    # Spend allowed per UTC day or calendar month, in US dollars of the configured `pricing`.
    max_budget_usd: float | None = None
    budget_period: Literal["daily", "monthly"] = "monthly"
    # An account-wide key: it sees every tenant's stored objects (files, batches, ...), not
    # only those it created.
    shared_objects: bool = False
    max_parallel_requests: int | None = None  # requests in flight at once; None: no limit
    # Lifetime and description (issue 32): refused with a 401 from this second on (Unix
    # time, UTC; None: never); free JSON (a mapping) the admin API returns and routing
    # rules match (`key_metadata`); who made it (`admin:<name>`, `db:<role>`, or the YAML's
    # word).
    expires_at: float | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)
    created_by: str | None = None
    team: str | None = None  # the team it belongs to (`teams:`), whose limits it shares
    # `allowed_models` are its team's, given because it named none (`fit_keys_in_teams`):
    # an export or an import writes none, so that it keeps following its team's.
    team_models: bool = False

    @property
    def digest(self) -> bytes:
        return self.key_sha256 or hashlib.sha256(self.key.encode()).digest()


@dataclass(frozen=True, slots=True)
class Team:
    """`teams[i]`: limits, a budget and models shared by every key of the team (each key keeps
    its own too: a request must pass both, and its spend counts against both)."""

    name: str
    allowed_models: tuple[str, ...] | None = None  # None: every model; a key's are within
    rate_limit: RateLimit | None = None
    tokens_per_minute: int | None = None
    max_budget_usd: float | None = None
    budget_period: Literal["daily", "monthly"] = "monthly"
    max_parallel_requests: int | None = None
    # Its keys see each other's stored objects (files, batches, responses, vector stores).
    shared_objects: bool = False
    metadata: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class TlsSettings:
    """`server.tls`: HTTPS on the proxy's port (read at startup; the files again on SIGHUP)."""

    cert_file: str
    key_file: str
    client_ca_file: str | None = None  # set: clients must present a certificate it signed


@dataclass(frozen=True, slots=True)
class RequestLogSettings:
    """`request_log`: one record per request (and per failed upstream attempt), written off
    the request path to PostgreSQL and/or a JSON-lines file. Read once, at startup."""

    # None: on in database mode (into the config database) or when database_url is set.
    enabled: bool | None = None
    database_url: str | None = field(default=None, repr=False)
    jsonl_path: str | None = None  # the same records as JSON lines (reopened on SIGHUP)
    capture_content: bool = False  # the request's and the answer's text, truncated
    max_content_bytes: int = 4096  # per text, with capture_content
    retention_days: int = 30  # 0: keep forever
    queue_size: int = 10000  # records waiting to be written; beyond, dropped and counted
    batch_size: int = 100  # records per write: larger batches stall the event loop longer
    flush_interval_secs: float = 1.0


@dataclass(frozen=True, slots=True)
class TracingSettings:
    """`tracing`: OpenTelemetry spans over OTLP/HTTP (llm_proxy.observe.tracing). Read once, at
    startup. The standard OTEL_* environment variables override each field they name; None
    here means "not set in the file" (then the variable, then the default applies)."""

    # None: on when an endpoint is set (here or in OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT).
    enabled: bool | None = None
    endpoint: str | None = None  # the collector's base URL: /v1/traces is appended
    traces_endpoint: str | None = None  # the full URL, used as it is
    protocol: str | None = None  # http/protobuf (default) or http/json
    # Sent with every export (an API key, a tenant): secrets, never logged or shown.
    headers: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    compression: str | None = None  # gzip (default) or none
    timeout_secs: float | None = None  # per export request (default 10)
    service_name: str | None = None  # default llm-proxy
    resource_attributes: tuple[tuple[str, str], ...] = ()
    sampler: str | None = None  # OTEL_TRACES_SAMPLER's names; default parentbased_always_on
    sampler_arg: float | None = None  # the ratio of the ratio samplers
    capture_content: bool = False  # prompt and completion text on the spans (events)
    max_content_bytes: int = 4096  # per text, with capture_content
    queue_size: int | None = None  # requests waiting to be exported (default 2048)
    batch_size: int | None = None  # requests per export (default 512)
    flush_interval_secs: float | None = None  # default 5


# --- routing: fallbacks, retries, strategies, rules (`routing:`; llm_proxy.config.routing) ---

Strategy = Literal["weighted", "latency", "least_busy", "cost"]
STRATEGIES: Final = ("weighted", "latency", "least_busy", "cost")

FallbackReason = Literal["any", "context_window", "content_policy"]

# The outcome classes a retry policy names (besides single statuses "400"-"599"):
# `connect` (no connection, a refused or reset one, the pool full, no cloud credential),
# `timeout`, `429`, `5xx` (any 5xx status) and `stream_error` (a stream whose first event is
# an error).
RETRY_CLASSES: Final = frozenset({"connect", "timeout", "429", "5xx", "stream_error"})
DEFAULT_RETRY_ON: Final = ("429", "5xx", "connect", "stream_error", "timeout")


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How one model's failed attempts are retried, before its fallbacks are tried."""

    attempts: int | None = None  # attempts at this model's providers; None: max_attempts
    on: tuple[str, ...] = DEFAULT_RETRY_ON  # RETRY_CLASSES and single statuses ("503"), sorted
    backoff_ms: float = 50.0  # before retrying a provider already tried: full jitter, doubling
    max_backoff_ms: float = 2000.0

    @property
    def statuses(self) -> frozenset[int]:
        """The single statuses `on` names (besides 429 and the 5xx class)."""
        return frozenset(int(s) for s in self.on if s.isdigit() and s != "429")


@dataclass(frozen=True, slots=True)
class ModelRouting:
    """The routing settings of one model (or pattern), or the defaults (`routing.retry`, ...)."""

    strategy: Strategy = "weighted"
    retry: RetryPolicy = RetryPolicy()
    deadline_secs: float | None = None  # bounds every retry and fallback until the first byte
    # The model's context window in tokens: a prompt estimated above it goes straight to the
    # model's context_window fallbacks (None: only the upstream's answer tells).
    context_window: int | None = None


@dataclass(frozen=True, slots=True)
class RuleMatch:
    """What a routing rule matches: every condition given must hold (an empty match: all)."""

    tags: tuple[str, ...] = ()  # any of these tags (x-llm-proxy-tags, metadata.tags)
    keys: tuple[str, ...] = ()  # the key's name is one of these (exact names or patterns)
    # (lower-cased header name, the values it may have): each header must have one of them
    headers: tuple[tuple[str, tuple[str, ...]], ...] = ()
    models: tuple[str, ...] = ()  # the requested model is one of these (names or patterns)
    # (field, the values it may have, each written as JSON): the key's `metadata` must have
    # each field with one of them
    key_metadata: tuple[tuple[str, tuple[str, ...]], ...] = ()


@dataclass(frozen=True, slots=True)
class RoutingRule:
    """`routing.rules[i]`: requests that match go only to `providers` and/or to `model`."""

    name: str  # given, or "rules[i]": for errors, the log and metrics
    match: RuleMatch
    providers: tuple[str, ...] | None = None
    model: str | None = None


# (model name or pattern, the chain of models tried after it, in order)
Chains = tuple[tuple[str, tuple[str, ...]], ...]


@dataclass(frozen=True, slots=True)
class Routing:
    """`routing:`: what happens when a model's providers fail, and who goes where."""

    fallbacks: Chains = ()  # after the model's own providers failed, whatever the failure
    context_window_fallbacks: Chains = ()  # the prompt is too long for the model
    content_policy_fallbacks: Chains = ()  # the upstream refused on content policy
    default: ModelRouting = ModelRouting()
    models: tuple[tuple[str, ModelRouting], ...] = ()  # per model (exact names, then patterns)
    rules: tuple[RoutingRule, ...] = ()

    def chains(self, reason: FallbackReason) -> Chains:
        if reason == "context_window":
            return self.context_window_fallbacks
        if reason == "content_policy":
            return self.content_policy_fallbacks
        return self.fallbacks

    @property
    def configured(self) -> bool:
        return self != NO_ROUTING


NO_ROUTING: Final = Routing()


# --- cache: the response cache (`cache:`; llm_proxy.config.cache, llm_proxy.proxy.cache) ---

CacheBackendName = Literal["memory", "redis"]
CacheNamespace = Literal["key", "team", "global"]
# The endpoints whose answers may be cached (`Call.endpoint`), as `cache.endpoints` names them.
CACHEABLE_ENDPOINTS: Final = (
    "chat/completions",
    "completions",
    "embeddings",
    "responses",
    "messages",
)


@dataclass(frozen=True, slots=True)
class CacheOverride:
    """`cache.per_model` / `cache.per_endpoint`: one pattern's (or endpoint's) own settings."""

    enabled: bool | None = None  # None: as the section says
    ttl_secs: int | None = None


@dataclass(frozen=True, slots=True)
class CacheSettings:
    """`cache:` (see the README's "Response cache"). `backend`, `url` and `max_bytes` are
    read when the cache starts (at startup, or when a reload turns it on or changes them:
    then the memory backend starts empty); the rest on every reload."""

    enabled: bool = False  # True when the section is present, unless it says `enabled: false`
    backend: CacheBackendName = "memory"
    url: str | None = field(default=None, repr=False)  # redis: default rate_limit_backend
    max_bytes: int = 256 * 1024 * 1024  # memory backend, all entries
    max_entry_bytes: int = 1024 * 1024  # larger answers (and streams) are not stored
    ttl_secs: int = 3600
    max_request_ttl_secs: int = 7 * 86400  # the most `x-llm-proxy-cache-ttl` may ask
    namespace: CacheNamespace = "key"
    models: tuple[str, ...] = ("*",)  # patterns: which models are cached
    endpoints: tuple[str, ...] = CACHEABLE_ENDPOINTS
    max_temperature: float = 0.0  # above it, only with `x-llm-proxy-cache: force`
    allow_n: bool = False  # cache answers with n > 1 choices
    charge_hits: bool = False  # a hit counts its tokens' cost against the key's budget
    coalesce_wait_secs: float = 30.0  # an identical request waits this long for the first's
    per_model: tuple[tuple[str, CacheOverride], ...] = ()  # in order: the first match wins
    per_endpoint: tuple[tuple[str, CacheOverride], ...] = ()


NO_CACHE: Final = CacheSettings()


@dataclass(frozen=True, slots=True)
class Config:
    providers: tuple[Provider, ...] = ()
    master_keys: tuple[MasterKey, ...] = ()
    teams: tuple[Team, ...] = ()
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    # SO_REUSEPORT: several instances (one per core) listen on one port, the kernel spreads
    # connections among them (read at startup).
    reuse_port: bool = False
    tls: TlsSettings | None = None
    # With tls: a second, plain-HTTP listener on this port (off unless set).
    http_port: int | None = None
    # A listener of this instance alone, for Prometheus (with reuse_port, the shared port
    # reaches any instance): /metrics and /health there. METRICS_PORT in the environment.
    metrics_port: int | None = None
    verify_ssl: bool = True
    timeouts: Timeouts = DEFAULT_TIMEOUTS
    max_request_body_mb: float = DEFAULT_MAX_BODY_MB
    provider_suffix: str | None = None
    metrics_token: str | None = field(default=None, repr=False)
    rate_limit_backend: str | None = field(default=None, repr=False)  # redis://...
    inject_stream_usage: bool = True
    config_cache_path: str | None = None  # database mode: last good config, for cold starts
    max_attempts: int = 3  # providers tried per request before giving up (failover)
    circuit_breaker: CircuitBreaker = CircuitBreaker()
    health_check: HealthCheck | None = None  # active checks for every provider
    shutdown_grace_secs: float = 30.0
    max_connections: int = 10000  # beyond: 503 at once
    keepalive_timeout_secs: float = 75.0  # idle client connections (and slow request heads)
    # One client address may hold this many connections (0: no per-client limit, e.g. behind
    # a load balancer whose address every connection shares).
    max_connections_per_client: int = 1000
    # A new connection must send its first request head within this; an idle connection that
    # never authenticated gets no more (authenticated keep-alive: keepalive_timeout_secs).
    header_timeout_secs: float = 10.0
    body_timeout_secs: float = 60.0  # the whole request body must arrive within this (408)
    # A client that takes none of the response for this long is cut off (a write-idle bound).
    write_timeout_secs: float = 60.0
    # Request bodies held in memory by all requests at once; beyond, 503 with Retry-After.
    max_inflight_body_mb: float = 1024.0
    # Multipart uploads spooled by all requests at once (temp directory and memory); beyond,
    # 503 with Retry-After (one upload larger than this alone: 413).
    max_spool_mb: float = 2048.0
    # Upstream connections (read once, at startup):
    trust_env: bool = True  # HTTPS_PROXY / HTTP_PROXY / NO_PROXY pick a forward proxy
    max_connections_per_provider: int = 1000  # per upstream origin; beyond, requests queue...
    pool_timeout_secs: float = 10.0  # ...this long for a free connection (then 503/504-ish)
    dns_ttl_secs: float = 300.0  # how long a host name's addresses are reused
    # False only when the operator says so: no key is asked for or checked. True with no
    # enabled key refuses every /v1 request (revoking the last key locks, never opens).
    require_auth: bool = True
    # Guards the admin API and /health/detailed. Never logged or shown. `admin_key` is the
    # key named "admin"; `admin_keys` adds named ones (the name is recorded with each change).
    admin_key: str | None = field(default=None, repr=False)
    admin_keys: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    # Optional prices per model (exact names or patterns), for llm_proxy_cost_usd_total.
    pricing: Pricing = ()
    request_log: RequestLogSettings = RequestLogSettings()
    tracing: TracingSettings = TracingSettings()
    # Answers calls that name no model and no object the proxy knows (files.list, a file id
    # created elsewhere); None: the only provider, when there is one.
    default_provider: str | None = None
    # The output a request without max_tokens (max_completion_tokens, max_output_tokens)
    # reserves against its key's tokens per minute and budget at admission.
    reserve_output_tokens: int = 4096
    routing: Routing = NO_ROUTING  # fallbacks, retries, strategies, rules
    # Database mode: `routing` is the routing tables' (False: the settings file's section,
    # which serves while the tables are empty; always False in YAML mode).
    routing_from_rows: bool = False
    cache: CacheSettings = NO_CACHE  # the response cache (off unless configured)

    @property
    def admin_credentials(self) -> tuple[tuple[str, str], ...]:
        """Every admin key, as (name, key)."""
        single = (("admin", self.admin_key),) if self.admin_key else ()
        return single + self.admin_keys

    @property
    def request_timeout_secs(self) -> float:
        return self.timeouts.request_timeout_secs or DEFAULT_TIMEOUT_SECS
