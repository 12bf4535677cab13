"""A fake Google OAuth2 token endpoint and GCE metadata server on loopback (`FakeGoogleOAuth`).

It checks what it is sent with an independent verifier (pyjwt on `cryptography`), not with our
code: `POST /token` takes

- the service-account JWT bearer grant (RFC 7523, grant_type
  `urn:ietf:params:oauth:grant-type:jwt-bearer`): the assertion's RS256 signature against the
  generated key pair's public key, `kid` = the key id, `iss` = the client email, `aud` = the
  token URI, a `scope` holding cloud-platform, `iat` near now and `exp - iat` <= 1 hour;
- the authorized_user refresh grant (`grant_type=refresh_token` with the client id, secret and
  refresh token of `authorized_user_info()`),

and `GET /computeMetadata/v1/instance/service-accounts/default/token` answers as the metadata
server does (only with `Metadata-Flavor: Google`; point GCE_METADATA_HOST at `metadata_host`).

Every grant issues a random token valid for `expires_in` seconds; `valid(token)` says whether
one was issued and has not expired or been revoked (`revoke_all()`): what a fake Vertex
checks `Authorization: Bearer` with.
`grants` counts the tokens issued, `requests` every token request with its kind and status.
`fail_next(n, status)` answers the next n requests with Google's error shape (400
invalid_grant, 500 ...), `stall_next(n)` holds the next n (`stalled` counts them) until
`release()` or the server stops. A rejected assertion is answered 400 invalid_grant and its
reason kept in `problems`.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

import jwt
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
CLOUD_PLATFORM = "https://www.googleapis.com/auth/cloud-platform"
METADATA_PATH = "/computeMetadata/v1/instance/service-accounts/default/token"
CLOCK_SKEW = 300  # seconds of iat drift accepted, as Google's endpoint tolerates


@dataclass(frozen=True, slots=True)
class Fault:
    status: int  # 0: stall until released
    error: str = ""
    description: str = ""


@dataclass(frozen=True, slots=True)
class TokenRequest:
    kind: str  # "service_account", "authorized_user", "metadata" or "unknown"
    status: int


def _key_pair() -> tuple[str, Any]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    return pem, key.public_key()


class FakeGoogleOAuth:
    """See the module docstring. An async context manager: the server runs inside it."""

    def __init__(self, *, expires_in: int = 3600, project_id: str = "fake-project") -> None:
        self.expires_in = expires_in
        self.project_id = project_id
        self.client_email = f"proxy@{project_id}.iam.gserviceaccount.com"
        self.private_key_id = secrets.token_hex(20)
        self.private_key_pem, self._public_key = _key_pair()
        self.client_id = f"{secrets.token_hex(6)}.apps.googleusercontent.com"
        self.client_secret = secrets.token_urlsafe(18)
        self.refresh_token = "1//" + secrets.token_urlsafe(40)
        self.grants = 0
        self.stalled = 0  # requests being held now
        self.requests: list[TokenRequest] = []
        self.problems: list[str] = []
        self.port = 0
        self._tokens: dict[str, float] = {}  # token -> time.monotonic() it expires at
        self._faults: deque[Fault] = deque()
        self._release = asyncio.Event()
        self._changed = asyncio.Condition()
        self._runner: web.AppRunner | None = None

    async def __aenter__(self) -> FakeGoogleOAuth:
        app = web.Application()
        app.router.add_post("/token", self._token)
        app.router.add_get(METADATA_PATH, self._metadata)
        self._runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.port = self._runner.addresses[0][1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._release.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @property
    def token_uri(self) -> str:
        return f"http://127.0.0.1:{self.port}/token"

    @property
    def metadata_host(self) -> str:
        """The value for GCE_METADATA_HOST."""
        return f"127.0.0.1:{self.port}"

    def service_account_info(self) -> dict[str, str]:
        """A service-account key file's JSON, as the Cloud console downloads it."""
        return {
            "type": "service_account",
            "project_id": self.project_id,
            "private_key_id": self.private_key_id,
            "private_key": self.private_key_pem,
            "client_email": self.client_email,
            "client_id": "1234567890",
            "auth_uri": "https://accounts.google.com/o/oauth2/auth",
            "token_uri": self.token_uri,
        }

    def authorized_user_info(self) -> dict[str, str]:
        """gcloud's application_default_credentials.json (which has no token_uri: the
        default is Google's, so a test adds `"token_uri": fake.token_uri`)."""
        return {
            "type": "authorized_user",
            "client_id": self.client_id,
            "client_secret": self.client_secret,
            "refresh_token": self.refresh_token,
            "quota_project_id": self.project_id,
        }

    def valid(self, token: str) -> bool:
        expires = self._tokens.get(token)
        return expires is not None and time.monotonic() < expires

    def revoke_all(self) -> None:
        """Every token issued so far stops being valid (as after a key is disabled)."""
        self._tokens.clear()

    def fail_next(
        self,
        n: int = 1,
        status: int = 400,
        error: str = "invalid_grant",
        description: str = "Invalid JWT Signature.",
    ) -> None:
        self._faults.extend([Fault(status, error, description)] * n)

    def stall_next(self, n: int = 1) -> None:
        self._release.clear()
        self._faults.extend([Fault(0)] * n)

    def release(self) -> None:
        """Answer the stalled requests (as errors 503) and stop stalling."""
        self._release.set()

    async def wait_for_grants(self, n: int, timeout: float = 10.0) -> int:
        async with asyncio.timeout(timeout), self._changed:
            await self._changed.wait_for(lambda: self.grants >= n)
        return self.grants

    async def wait_for_requests(self, n: int, timeout: float = 10.0) -> list[TokenRequest]:
        async with asyncio.timeout(timeout), self._changed:
            await self._changed.wait_for(lambda: len(self.requests) >= n)
        return self.requests

    async def _token(self, request: web.Request) -> web.Response:
        form = await request.post()
        grant_type = form.get("grant_type")
        if grant_type == JWT_BEARER:
            kind, problem = "service_account", self._check_assertion(str(form.get("assertion")))
        elif grant_type == "refresh_token":
            kind, problem = "authorized_user", self._check_refresh(form)
        else:
            kind, problem = "unknown", f"grant_type {grant_type!r}"
        if problem is None:
            return await self._answer(kind)
        self.problems.append(problem)
        error = {"error": "invalid_grant", "error_description": problem}
        return await self._finish(kind, 400, error)

    async def _metadata(self, request: web.Request) -> web.Response:
        if request.headers.get("Metadata-Flavor") != "Google":
            self.problems.append("metadata request without Metadata-Flavor: Google")
            return await self._finish("metadata", 403, {"error": "Missing Metadata-Flavor"})
        return await self._answer("metadata")

    async def _answer(self, kind: str) -> web.Response:
        fault = self._faults.popleft() if self._faults else None
        if fault is not None and fault.status == 0:
            self.stalled += 1
            try:
                await self._release.wait()
            finally:
                self.stalled -= 1
            fault = Fault(503, "unavailable", "released after a stall")
        if fault is not None:
            error = {"error": fault.error, "error_description": fault.description}
            return await self._finish(kind, fault.status, error)
        token = "ya29." + secrets.token_urlsafe(32)
        self._tokens[token] = time.monotonic() + self.expires_in
        self.grants += 1
        body = {"access_token": token, "expires_in": self.expires_in, "token_type": "Bearer"}
        return await self._finish(kind, 200, body)

    async def _finish(self, kind: str, status: int, body: dict[str, Any]) -> web.Response:
        async with self._changed:
            self.requests.append(TokenRequest(kind, status))
            self._changed.notify_all()
        return web.json_response(body, status=status)

    def _check_assertion(self, assertion: str) -> str | None:
        """Why the assertion is refused, or None."""
        try:
            header = jwt.get_unverified_header(assertion)
            claims = jwt.decode(
                assertion,
                self._public_key,
                algorithms=["RS256"],
                audience=self.token_uri,
                issuer=self.client_email,
                leeway=CLOCK_SKEW,
                options={"require": ["iss", "aud", "iat", "exp", "scope"]},
            )
        except jwt.PyJWTError as exc:
            return f"assertion refused: {exc}"
        if header.get("kid") != self.private_key_id:
            return f"kid {header.get('kid')!r} is not the key's id"
        if CLOUD_PLATFORM not in str(claims["scope"]).split():
            return f"scope {claims['scope']!r} lacks cloud-platform"
        lifetime = claims["exp"] - claims["iat"]
        if not 0 < lifetime <= 3600:
            return f"exp - iat = {lifetime}: must be in (0, 3600]"
        if abs(claims["iat"] - time.time()) > CLOCK_SKEW:
            return f"iat {claims['iat']} is not now"
        return None

    def _check_refresh(self, form: Any) -> str | None:
        sent = (form.get("client_id"), form.get("client_secret"), form.get("refresh_token"))
        if sent != (self.client_id, self.client_secret, self.refresh_token):
            return "Token has been expired or revoked."
        return None
