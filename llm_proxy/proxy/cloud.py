"""The cloud providers' side of an upstream: Google AI Studio (`gemini`), Vertex AI (`vertex`)
and Amazon Bedrock (`bedrock`). Their URLs name the model and the method
(`models/{model}:generateContent`, `.../publishers/anthropic/models/{model}:rawPredict`,
`/model/{modelId}/converse-stream`), so a call's target is compiled per model and action (then
cached); Vertex and Bedrock calls carry a credential computed per call (`CloudAuth`).

The credential on the request path is cheap by construction: a Vertex call takes the cached
`Authorization` line of a token refreshed in the background (`proxy.credentials.google`); a
Bedrock call costs one SHA-256 of its body and one HMAC with a signing key derived once a day
(`proxy.credentials.sigv4`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Protocol
from urllib.parse import quote

from yarl import URL

from llm_proxy import errors
from llm_proxy.config.model import Provider
from llm_proxy.proxy.client import Target, target
from llm_proxy.proxy.credentials import (
    AwsCredentialsError,
    CredentialRegistry,
    GoogleCredentialsError,
    GoogleInfo,
    GoogleTokenSource,
    SigV4Signer,
    load_google_info,
    resolve_aws,
)

if TYPE_CHECKING:
    from llm_proxy.proxy.upstream import Upstream

# The protocols an upstream speaks, besides `upstream.OPENAI` and `upstream.ANTHROPIC`.
GEMINI: Final = "gemini"  # generateContent (AI Studio, and Vertex's Google models)
BEDROCK: Final = "bedrock"  # Converse
CLOUD_TYPES: Final = frozenset(("gemini", "vertex", "bedrock"))

# Google's API version in AI Studio paths; Vertex's is v1.
GEMINI_VERSION: Final = "/v1beta"
VERTEX_VERSION: Final = "/v1"
# The anthropic_version a Vertex Anthropic model requires in the body (not a header).
VERTEX_ANTHROPIC_VERSION: Final = "vertex-2023-10-16"

# Actions (the part of the URL after the model).
GENERATE: Final = "generateContent"
STREAM_GENERATE: Final = "streamGenerateContent"
COUNT_TOKENS: Final = "countTokens"
EMBED: Final = "embedContent"
BATCH_EMBED: Final = "batchEmbedContents"
RAW_PREDICT: Final = "rawPredict"
STREAM_RAW_PREDICT: Final = "streamRawPredict"
CONVERSE: Final = "converse"
CONVERSE_STREAM: Final = "converse-stream"
STREAMING_ACTIONS: Final = frozenset((STREAM_GENERATE, STREAM_RAW_PREDICT))

_CACHED: Final = 256  # targets per upstream: the models x actions actually called


class CredentialsUnavailable(Exception):
    """The provider's credential could not be had (a token refresh failed, or took too
    long): the attempt fails as a provider error, with this message (never a secret)."""


class CloudAuth(Protocol):
    def lines(self, call: CloudTarget, body: bytes) -> bytes | None:
        """The credential's header lines for one call; None when not ready (`ready`)."""
        ...

    async def ready(self, within: float) -> None:
        """Wait (at most `within` seconds) until `lines` can answer; `CredentialsUnavailable`
        otherwise."""
        ...


@dataclass(frozen=True, slots=True)
class CloudTarget:
    """A compiled target, with what a signature covers."""

    target: Target
    host: str  # the Host header's value
    raw_path: str  # percent-encoded, as sent
    raw_query: str


class GoogleAuth:
    """Vertex AI: the shared token source's cached `Authorization` line. (The source is the
    registry's, looked up on the first call: it runs on the app's loop, which a config
    compiled before the app started does not have yet.)"""

    __slots__ = ("_source", "info", "registry")

    def __init__(self, registry: CredentialRegistry, info: GoogleInfo) -> None:
        self.registry = registry
        self.info = info
        self._source: GoogleTokenSource | None = None

    @property
    def source(self) -> GoogleTokenSource:
        source = self._source
        if source is None:
            source = self._source = self.registry.google(self.info)
        return source

    def lines(self, call: CloudTarget, body: bytes) -> bytes | None:
        return self.source.header()

    async def ready(self, within: float) -> None:
        try:
            await self.source.wait_header(within)
        except GoogleCredentialsError as exc:
            raise CredentialsUnavailable(f"Google credentials: {exc}") from None

    def refused(self, lines: bytes) -> None:
        """The upstream refused the token (401): fetch a new one (rate-limited)."""
        self.source.invalidate(lines)


class Unavailable:
    """A provider whose credentials could not be loaded (no file, no profile, no
    application-default credentials): each call fails at once as a provider error saying
    why, while the rest of the config serves (`check-config` reports it too)."""

    __slots__ = ("reason",)

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def lines(self, call: CloudTarget, body: bytes) -> bytes | None:
        return None

    async def ready(self, within: float) -> None:
        raise CredentialsUnavailable(self.reason)


class AwsAuth:
    """Amazon Bedrock: each call signed (SigV4)."""

    __slots__ = ("signer",)

    def __init__(self, signer: SigV4Signer) -> None:
        self.signer = signer

    def lines(self, call: CloudTarget, body: bytes) -> bytes | None:
        return self.signer.headers("POST", call.host, call.raw_path, call.raw_query, body)

    async def ready(self, within: float) -> None:
        return None


@dataclass(slots=True)
class Cloud:
    """The cloud part of one compiled upstream."""

    kind: str  # gemini, vertex, bedrock
    api_base: str  # scheme://host[:port] and any path prefix, without a trailing slash
    base_path: str  # the path up to the model (see `model_path`)
    verify: bool
    proxy: URL | None
    auth: CloudAuth | None  # None: the provider's key is in its fixed header lines (gemini)
    _cache: dict[tuple[str, str], CloudTarget]

    def refused(self, lines: bytes) -> None:
        """The upstream answered 401 to this credential."""
        if isinstance(self.auth, GoogleAuth):
            self.auth.refused(lines)

    def protocol(self, model: str) -> str:
        """What the upstream speaks for `model`: Vertex serves Anthropic's models (named
        `claude-...`) through Anthropic's Messages API, every other one through Gemini's."""
        if self.kind == "bedrock":
            return BEDROCK
        if self.kind == "vertex" and model.startswith("claude"):
            return "anthropic"
        return GEMINI

    def call(self, model: str, action: str, method: str = "POST") -> CloudTarget:
        """The compiled target for `action` of `model` (cached)."""
        key = (model, action)
        found = self._cache.get(key)
        if found is not None:
            return found
        path = self.model_path(model) + self._action(action)
        query = "alt=sse" if action in (STREAM_GENERATE,) else ""
        url = URL(self.api_base + path + ("?" + query if query else ""), encoded=True)
        compiled = CloudTarget(
            target(url, method, self.verify, self.proxy),
            url.host_port_subcomponent or "",
            url.raw_path,
            query,
        )
        if len(self._cache) >= _CACHED:
            self._cache.clear()
        self._cache[key] = compiled
        return compiled

    def list_models(self) -> CloudTarget | None:
        """`GET .../models` (AI Studio only: a health check's call without a model)."""
        if self.kind != "gemini":
            return None
        url = URL(self.api_base + GEMINI_VERSION + "/models", encoded=True)
        return CloudTarget(
            target(url, "GET", self.verify, self.proxy), url.host_port_subcomponent or "", "", ""
        )

    def model_path(self, model: str) -> str:
        segment = _segment(model)
        if self.kind == "vertex":
            publisher = "anthropic" if model.startswith("claude") else "google"
            return f"{self.base_path}/publishers/{publisher}/models/{segment}"
        if self.kind == "bedrock":
            return f"{self.base_path}/{segment}"
        return f"{self.base_path}/{segment}"

    def _action(self, action: str) -> str:
        return "/" + action if self.kind == "bedrock" else ":" + action


def google_infos(upstreams: Iterable[Upstream]) -> list[GoogleInfo]:
    """The Google credentials a snapshot's Vertex providers use."""
    return [
        u.cloud.auth.info
        for u in upstreams
        if u.cloud is not None and isinstance(u.cloud.auth, GoogleAuth)
    ]


def _segment(model: str) -> str:
    """A model name as one path segment, percent-encoded (`:` of a Bedrock id included); a
    dot segment is a 400, as for Azure's deployments."""
    if model in (".", "..") or not model:
        raise errors.bad_param("model", f"{model!r} is not a model name.")
    return quote(model, safe="")


def compile_cloud(
    provider: Provider,
    verify: bool,
    proxy: URL | None,
    credentials: CredentialRegistry | None,
    env: Mapping[str, str],
) -> Cloud:
    """The cloud part of `provider`'s upstream. Credentials are resolved here (a file read, no
    network): a provider whose credentials cannot be had at all fails its config load."""
    kind = provider.provider_type
    base = provider.api_base.rstrip("/")
    if kind == "gemini":
        for version in (GEMINI_VERSION, VERTEX_VERSION):
            base = base.removesuffix(version)
        return Cloud(kind, base, GEMINI_VERSION + "/models", verify, proxy, None, {})
    if kind == "vertex":
        location = provider.location or "global"
        project = provider.project or ""
        auth: CloudAuth
        try:
            info = load_google_info(
                credentials_file=provider.credentials_file,
                credentials_json=provider.credentials_json,
                env=env,
            )
            project = project or info.project_id or ""
            if credentials is None:
                raise GoogleCredentialsError("no credential registry (a proxy without an app)")
            auth = GoogleAuth(credentials, info)
        except (GoogleCredentialsError, OSError) as exc:
            auth = Unavailable(f"Google credentials: {exc}")
        if not project:
            auth = Unavailable("no `project`, and its credentials name none")
        base_path = (
            f"{VERTEX_VERSION}/projects/{quote(project, safe='')}"
            f"/locations/{quote(location, safe='')}"
        )
        return Cloud(kind, base, base_path, verify, proxy, auth, {})
    try:
        creds = resolve_aws(
            access_key_id=provider.aws_access_key_id,
            secret_access_key=provider.aws_secret_access_key,
            session_token=provider.aws_session_token,
            profile=provider.aws_profile,
            env=env,
        )
    except (AwsCredentialsError, OSError) as exc:
        return Cloud(kind, base, "/model", verify, proxy, Unavailable(f"AWS: {exc}"), {})
    region = provider.region or ""
    if credentials is not None:
        signer = credentials.signer(creds, region)
    else:
        signer = SigV4Signer(
            creds.access_key_id, creds.secret_access_key, creds.session_token, region
        )
    return Cloud(kind, base, "/model", verify, proxy, AwsAuth(signer), {})
