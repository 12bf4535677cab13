"""Google OAuth2 access tokens for Vertex AI: which credential (`load_google_info`, once, when
the config is loaded) and a token kept fresh in the background (`GoogleTokenSource`).

Credentials, first found wins: the provider's `credentials_json` (inline) or
`credentials_file`; then application-default credentials as Google's libraries find them:
GOOGLE_APPLICATION_CREDENTIALS (a file that must exist), gcloud's
application_default_credentials.json under $CLOUDSDK_CONFIG or ~/.config/gcloud, else the
metadata server (GCE_METADATA_HOST or metadata.google.internal). A file is a service account
key (`type: service_account`) or gcloud's user credentials (`type: authorized_user`), read and
checked by the config's own parser (`config.clouds.google_credentials`): the proxy takes
exactly the JSON that validation accepts, and adds one check of its own, that a service
account's key loads as an RSA key (RS256). GOOGLE_CLOUD_PROJECT or GCLOUD_PROJECT, when set,
overrides the credential's project, as in Google's libraries.

Tokens: a service account signs an RS256 JWT assertion (RFC 7523: iss = client email, scope
cloud-platform, aud = token URI, one hour) and trades it at its `token_uri`; user credentials
trade their refresh token at theirs (Google's by default); on GCE, GKE or Cloud Run the
metadata server hands out the attached service account's token. The hot path only reads a
cached header line (`header()`); the background task fetches the next token 5 minutes (10% of
the lifetime for short ones) before expiry, retries failures with jittered backoff from 1 to
60 seconds, and serves the old token while it is valid. Errors carry Google's HTTP status,
error and error_description, never the assertion, key, refresh token or access token.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import random
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final, Literal

import aiohttp
import orjson
import structlog

from llm_proxy.config.clouds import (
    CredentialsError,
    GoogleCredentials,
    google_credentials,
    read_google_credentials,
)
from llm_proxy.tasks import stop_task

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey

log = structlog.get_logger()

SCOPE: Final = "https://www.googleapis.com/auth/cloud-platform"
JWT_BEARER: Final = "urn:ietf:params:oauth:grant-type:jwt-bearer"
METADATA_HOST: Final = "metadata.google.internal"
METADATA_TOKEN_PATH: Final = "/computeMetadata/v1/instance/service-accounts/default/token"  # noqa: S105 (a path)
ASSERTION_SECS: Final = 3600  # the longest Google accepts
REFRESH_BEFORE_SECS: Final = 300.0
REQUEST_TIMEOUT_SECS: Final = 20.0
# A token the upstream refused is replaced at once, but not more often than this: a 401 that
# a new token does not cure must not become a grant per request.
INVALIDATE_EVERY_SECS: Final = 10.0
# An access token goes into a header line: anything outside RFC 6750's b64token is refused.
_TOKEN_CHARS: Final = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
_ERROR_FIELDS: Final = ("error", "error_description")  # OAuth2's error answer (RFC 6749 5.2)
_DETAIL_CHARS: Final = 300

Kind = Literal["service_account", "authorized_user", "metadata"]


class GoogleCredentialsError(Exception):
    """The credential cannot be loaded or a token cannot be had; the message says why."""


@dataclass(frozen=True, slots=True)
class GoogleInfo:
    """One credential, validated. `source` says where it was found (a path,
    "credentials_json", "metadata server"); `credentials` is the JSON's content (None: the
    metadata server's account); `project_id` is the default for Vertex's project."""

    source: str
    token_uri: str
    project_id: str | None = None
    credentials: GoogleCredentials | None = None

    @property
    def kind(self) -> Kind:
        return "metadata" if self.credentials is None else self.credentials.kind

    @property
    def identity(self) -> str:
        """What makes two credentials the same token source: the account, the endpoint and a
        digest of the secret (a rotated key is another source), never the secret itself."""
        c = self.credentials
        if c is None:
            return f"metadata:{self.token_uri}"
        if c.kind == "service_account":
            return f"service_account:{c.client_email}:{c.token_uri}:{_digest(c.private_key)}"
        digest = _digest(f"{c.client_id}\n{c.client_secret}\n{c.refresh_token}")
        return f"authorized_user:{c.token_uri}:{digest}"

    @property
    def label(self) -> str:
        """For /health/detailed: the service account's email, else the kind."""
        email = self.credentials.client_email if self.credentials is not None else None
        return email or self.kind


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()[:16]


def load_google_info(
    *, credentials_file: str | None, credentials_json: str | None, env: Mapping[str, str]
) -> GoogleInfo:
    """The credential to use, in the module docstring's order. A JSON is read and checked by
    the config's own parser (`llm_proxy.config.clouds`), so the proxy uses exactly what
    validation accepts; its messages name fields, never quote a value."""
    if credentials_file and credentials_json:
        raise GoogleCredentialsError("give credentials_file or credentials_json, not both")
    if credentials_json:
        return _info("credentials_json", env, text=credentials_json)
    if credentials_file:
        return _info("credentials_file", env, path=credentials_file)
    explicit = env.get("GOOGLE_APPLICATION_CREDENTIALS")
    if explicit:
        return _info("GOOGLE_APPLICATION_CREDENTIALS", env, path=explicit)
    gcloud = env.get("CLOUDSDK_CONFIG")
    home = env.get("HOME")
    directory = Path(gcloud) if gcloud else Path(home) / ".config" / "gcloud" if home else None
    if directory is not None:
        well_known = directory / "application_default_credentials.json"
        if well_known.is_file():
            return _info(str(well_known), env, path=str(well_known))
    host = env.get("GCE_METADATA_HOST") or METADATA_HOST
    return GoogleInfo(
        source="metadata server",
        token_uri=f"http://{host}{METADATA_TOKEN_PATH}",
        project_id=_env_project(env),
    )


def _info(
    what: str, env: Mapping[str, str], *, path: str | None = None, text: str = ""
) -> GoogleInfo:
    """The credentials JSON in the file at `path`, else `text`, as a GoogleInfo; an error
    starts with `what` (a setting, a variable, the path of gcloud's file)."""
    try:
        credentials = google_credentials(text) if path is None else read_google_credentials(path)
        if credentials.kind == "service_account":
            _check_key(credentials.private_key)
    except CredentialsError as exc:
        raise GoogleCredentialsError(f"{what}: {exc}") from None
    return GoogleInfo(
        source=path or what,
        token_uri=credentials.token_uri,
        project_id=_env_project(env) or credentials.project_id,
        credentials=credentials,
    )


def _env_project(env: Mapping[str, str]) -> str | None:
    # Google's libraries let these override the credential's own project.
    return env.get("GOOGLE_CLOUD_PROJECT") or env.get("GCLOUD_PROJECT") or None


def _check_key(pem: str) -> RSAPrivateKey:
    """The service account's key, loaded: the config checks only that it looks like PEM, the
    JWT needs an RSA key (CredentialsError, in the config's words, when it is not one)."""
    # cryptography is imported with the first service account (+8 MiB RSS, 13 ms measured):
    # a proxy without one does not load it.
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    try:
        key = serialization.load_pem_private_key(pem.encode(), password=None)
    except (ValueError, TypeError):
        raise CredentialsError("(service_account) private_key is not a PEM private key") from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise CredentialsError("(service_account) private_key is not an RSA key (RS256)")
    return key


def _b64(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def assertion(account: GoogleCredentials, key: RSAPrivateKey, now: int) -> str:
    """The service account's signed JWT (RFC 7523) for the cloud-platform scope."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding

    header: dict[str, str] = {"alg": "RS256", "typ": "JWT"}
    if account.private_key_id:
        header["kid"] = account.private_key_id
    claims = {
        "iss": account.client_email,
        "scope": SCOPE,
        "aud": account.token_uri,
        "iat": now,
        "exp": now + ASSERTION_SECS,
    }
    signing_input = _b64(orjson.dumps(header)) + b"." + _b64(orjson.dumps(claims))
    signature = key.sign(signing_input, padding.PKCS1v15(), hashes.SHA256())
    return (signing_input + b"." + _b64(signature)).decode()


def refresh_delay(lifetime: float) -> float:
    """Seconds from issue to the next fetch: 5 minutes before expiry, or 10% of the lifetime
    when that is shorter."""
    return max(0.0, lifetime - min(REFRESH_BEFORE_SECS, lifetime / 10))


class GoogleTokenSource:
    """One credential's current access token, fetched and refreshed by a background task.

    `header()` is the hot path: the cached `Authorization` line, or None when there is no
    valid token (before the first fetch, or after the last one expired without a successful
    refresh); then `wait_header(timeout)` waits for the fetch in flight and either returns the
    line or raises GoogleCredentialsError with the cause. It never waits longer than
    `timeout`, and raises at once while the task is backing off after a failure.
    """

    def __init__(self, info: GoogleInfo, *, min_backoff: float = 1.0, max_backoff: float = 60.0):
        self.info = info
        self.last_error: str | None = None
        self.expires_at: float | None = None  # wall-clock time of the current token's expiry
        c = info.credentials
        self._key = _check_key(c.private_key) if c and c.kind == "service_account" else None
        self._min_backoff = min_backoff
        self._max_backoff = max_backoff
        self._header: bytes | None = None
        self._attempt: asyncio.Future[bytes | None] | None = None
        self._expiry: asyncio.TimerHandle | None = None
        self._task: asyncio.Task[None] | None = None
        self._session: aiohttp.ClientSession | None = None
        self._wake = asyncio.Event()  # set: refresh now (the upstream refused the token)
        self._invalidated_at = -INVALIDATE_EVERY_SECS

    def start(self, session: aiohttp.ClientSession) -> None:
        """Begin the first fetch (in a background task on the running loop)."""
        if self._task is not None:
            return
        self._session = session
        loop = asyncio.get_running_loop()
        self._attempt = loop.create_future()
        self._task = loop.create_task(self._run(), name=f"google-token:{self.info.label}")

    def header(self) -> bytes | None:
        return self._header

    # The bound is the contract (a request never hangs on the token), not a caller's option.
    async def wait_header(self, timeout: float) -> bytes:  # noqa: ASYNC109
        """The header line, waiting at most `timeout` for the fetch in flight; raises
        GoogleCredentialsError with the cause when there is none to be had."""
        if self._header is not None:
            return self._header
        if self._attempt is None:
            reason = self.last_error or "the token source is not running"
            raise GoogleCredentialsError(f"no Google access token: {reason}")
        try:
            async with asyncio.timeout(timeout):
                header = await asyncio.shield(self._attempt)
        except TimeoutError:
            reason = self.last_error or "the token endpoint has not answered"
            raise GoogleCredentialsError(
                f"no Google access token after {timeout:g}s: {reason}"
            ) from None
        if header is None:
            raise GoogleCredentialsError(f"no Google access token: {self.last_error}")
        return header

    def invalidate(self, header: bytes) -> None:
        """The upstream refused this header's token (HTTP 401): drop it and fetch a new one
        now, unless it was already replaced or the last invalidation is under
        INVALIDATE_EVERY_SECS old. Callers then wait for the new token with `wait_header`."""
        loop = asyncio.get_running_loop()
        if header is not self._header or self._task is None:
            return
        if loop.time() - self._invalidated_at < INVALIDATE_EVERY_SECS:
            return
        self._invalidated_at = loop.time()
        self._header = None
        if self._attempt is None:
            self._attempt = loop.create_future()
        self._wake.set()

    async def close(self) -> None:
        """Stop refreshing; callers waiting, and any after, get a GoogleCredentialsError."""
        await stop_task(self._task)
        if self._expiry is not None:
            self._expiry.cancel()
        self._header = None
        self.last_error = "closed"
        if self._attempt is not None and not self._attempt.done():
            self._attempt.set_result(None)
        self._attempt = None

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        failures = 0
        while True:
            attempt = self._attempt
            if attempt is None:
                attempt = self._attempt = loop.create_future()
            try:
                token, lifetime = await self._fetch()
            except Exception as exc:
                if not isinstance(exc, aiohttp.ClientError | TimeoutError | GoogleCredentialsError):
                    # A bug, not the endpoint: logged, and the task keeps trying.
                    log.exception("google_token_fetch_failed", credential=self.info.label)
                self.last_error = _describe(exc)
                self._attempt = None
                attempt.set_result(None)
                failures += 1
                base = min(self._max_backoff, self._min_backoff * 2 ** (failures - 1))
                delay = base * random.uniform(0.5, 1.0)  # noqa: S311 (jitter, not a secret)
                log.warning(
                    "google_token_failed",
                    credential=self.info.label,
                    error=self.last_error,
                    failures=failures,
                    retry_in_secs=round(delay, 1),
                    token_valid=self._header is not None,
                )
                await asyncio.sleep(delay)
                continue
            failures = 0
            self.last_error = None
            header = self._header = b"Authorization: Bearer " + token.encode() + b"\r\n"
            self.expires_at = time.time() + lifetime
            # The line is withdrawn a little before Google stops honouring it (5%, at most
            # 10 s): a request that just took it still has time to be sent.
            if self._expiry is not None:
                self._expiry.cancel()
            self._expiry = loop.call_later(lifetime - min(10.0, lifetime / 20), self._expire)
            self._attempt = None
            attempt.set_result(header)
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(refresh_delay(lifetime)):
                    await self._wake.wait()

    def _expire(self) -> None:
        self._header = None
        self._expiry = None

    async def _fetch(self) -> tuple[str, float]:
        """One token request: the access token and its lifetime in seconds."""
        assert self._session is not None
        info = self.info
        timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_SECS)
        c = info.credentials
        if c is None:
            request = self._session.get(
                info.token_uri, headers={"Metadata-Flavor": "Google"}, timeout=timeout
            )
        else:
            if c.kind == "service_account":
                assert self._key is not None
                signed = assertion(c, self._key, int(time.time()))
                form = {"grant_type": JWT_BEARER, "assertion": signed}
            else:
                form = {
                    "grant_type": "refresh_token",
                    "client_id": str(c.client_id),
                    "client_secret": c.client_secret,
                    "refresh_token": c.refresh_token,
                }
            request = self._session.post(
                info.token_uri, data=form, headers={"Accept": "application/json"}, timeout=timeout
            )
        async with request as response:
            body = await response.read()
            status = response.status
        return _token(info.token_uri, status, body)


def _token(uri: str, status: int, body: bytes) -> tuple[str, float]:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        data = None
    if status != 200:
        detail = ""
        if isinstance(data, dict):
            parts = [str(data[k])[:_DETAIL_CHARS] for k in _ERROR_FIELDS if data.get(k)]
            detail = ": " + ": ".join(parts) if parts else ""
        raise GoogleCredentialsError(f"{uri} answered HTTP {status}{detail}")
    if not isinstance(data, dict):
        raise GoogleCredentialsError(f"{uri} answered 200 without a JSON object")
    token, lifetime = data.get("access_token"), data.get("expires_in")
    if not isinstance(token, str) or _TOKEN_CHARS.fullmatch(token) is None:
        raise GoogleCredentialsError(f"{uri} answered 200 without a usable access_token")
    if not isinstance(lifetime, int | float) or isinstance(lifetime, bool) or lifetime <= 0:
        raise GoogleCredentialsError(f"{uri} answered 200 without a positive expires_in")
    return token, float(lifetime)


def _describe(exc: Exception) -> str:
    if isinstance(exc, GoogleCredentialsError):
        return str(exc)
    if isinstance(exc, TimeoutError):
        return f"the token request timed out after {REQUEST_TIMEOUT_SECS:g}s"
    if isinstance(exc, aiohttp.ClientError):
        return f"{type(exc).__name__}: {exc}"
    return f"{type(exc).__name__} (see the log)"
