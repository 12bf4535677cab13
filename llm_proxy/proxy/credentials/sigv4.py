"""AWS Signature Version 4 for the requests the proxy sends to Bedrock: pure, no I/O.

`SigV4Signer.headers(...)` returns the header lines to add to one request (X-Amz-Date,
X-Amz-Security-Token with temporary credentials, Authorization), as the upstream client writes
them. What is signed is what botocore's `SigV4Auth` signs for a non-S3 service, byte for byte:

- the canonical URI is the path as sent (already percent-encoded: a model id's ':' goes out as
  %3A), dot segments and empty segments removed, then percent-encoded once more (the non-S3
  rule: `%3A` is signed as `%253A`);
- the canonical query: each name and value decoded then encoded strictly (RFC 3986 unreserved
  characters only), sorted by name then value;
- signed headers: host, x-amz-date, x-amz-security-token (when a session token) and
  content-type (when given: the request must then send exactly that value);
- the payload hash is the body's SHA-256 (no X-Amz-Content-Sha256 header: only S3 wants it,
  and botocore does not send it to Bedrock).

The signing key (four chained HMACs from the secret) is derived once per UTC date and kept, as
is each path's canonical URI, so one request costs a SHA-256 of the body, one of the canonical
request and one HMAC.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from datetime import UTC, datetime
from typing import Final
from urllib.parse import quote, unquote

ALGORITHM: Final = "AWS4-HMAC-SHA256"
# Canonical URIs kept per signer: a few model ids times a few actions; past this, reset.
_URI_CACHE_SIZE: Final = 256
_UNRESERVED: Final = "-_.~"


def canonical_uri(raw_path: str) -> str:
    """The path as signed: dot and empty segments removed (RFC 3986 5.2.4, and AWS collapses
    slashes), then encoded again, '/' and '~' kept."""
    if not raw_path:
        return "/"
    segments: list[str] = []
    for segment in raw_path.split("/"):
        if segment == "..":
            if segments:
                segments.pop()
        elif segment and segment != ".":
            segments.append(segment)
    first = "/" if raw_path[0] == "/" else ""
    last = "/" if raw_path[-1] == "/" and segments else ""
    return quote(first + "/".join(segments) + last, safe="/~")


def _strict(component: str) -> str:
    return quote(unquote(component), safe=_UNRESERVED)


def canonical_query(raw_query: str) -> str:
    """Each `name=value` decoded and re-encoded strictly, sorted by name then value: what the
    service computes from whatever encoding the client chose."""
    if not raw_query:
        return ""
    pairs = []
    for pair in raw_query.split("&"):
        name, _, value = pair.partition("=")
        pairs.append((_strict(name), _strict(value)))
    return "&".join(f"{name}={value}" for name, value in sorted(pairs))


def _hmac(key: bytes, message: str) -> bytes:
    return hmac.new(key, message.encode(), hashlib.sha256).digest()


class SigV4Signer:
    """Signs requests for one access key, region and service. Holds the secret: its repr
    names the access key id only."""

    __slots__ = (
        "_date",
        "_key",
        "_secret",
        "_token",
        "_token_line",
        "_uris",
        "access_key_id",
        "region",
        "service",
    )

    def __init__(
        self,
        access_key_id: str,
        secret_access_key: str,
        session_token: str | None,
        region: str,
        service: str = "bedrock",
    ) -> None:
        self.access_key_id = access_key_id
        self.region = region
        self.service = service
        self._secret = ("AWS4" + secret_access_key).encode()
        self._token = session_token or ""
        self._token_line = (
            f"X-Amz-Security-Token: {session_token}\r\n".encode("latin-1") if session_token else b""
        )
        self._date = ""
        self._key = b""
        self._uris: dict[str, str] = {}

    def __repr__(self) -> str:
        return (
            f"SigV4Signer(access_key_id={self.access_key_id!r}, region={self.region!r}, "
            f"service={self.service!r})"
        )

    def signing_key(self, date: str) -> bytes:
        """The key for a UTC date (YYYYMMDD), derived once per date."""
        if date != self._date:
            key = _hmac(self._secret, date)
            key = _hmac(key, self.region)
            key = _hmac(key, self.service)
            self._key = _hmac(key, "aws4_request")
            self._date = date
        return self._key

    def headers(
        self,
        method: str,
        host: str,
        raw_path: str,
        raw_query: str,
        body: bytes,
        now: datetime | None = None,
        content_type: str | None = None,
    ) -> bytes:
        """The header lines ("Name: value\\r\\n" each, latin-1) that sign this request; `host`
        is the Host header's value as sent, `raw_path` and `raw_query` the target as sent, `now` an
        aware datetime (the clock when None)."""
        if now is None:
            stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        else:
            stamp = now.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
        date = stamp[:8]
        uri = self._uris.get(raw_path)
        if uri is None:
            if len(self._uris) >= _URI_CACHE_SIZE:
                self._uris.clear()
            uri = self._uris[raw_path] = canonical_uri(raw_path)
        headers = [("host", " ".join(host.split())), ("x-amz-date", stamp)]
        if content_type is not None:
            headers.append(("content-type", " ".join(content_type.split())))
        if self._token:
            headers.append(("x-amz-security-token", self._token))
        headers.sort()
        signed = ";".join(name for name, _ in headers)
        request = "\n".join(
            (
                method.upper(),
                uri,
                canonical_query(raw_query),
                "".join(f"{name}:{value}\n" for name, value in headers),
                signed,
                hashlib.sha256(body).hexdigest(),
            )
        )
        scope = f"{date}/{self.region}/{self.service}/aws4_request"
        to_sign = f"{ALGORITHM}\n{stamp}\n{scope}\n{hashlib.sha256(request.encode()).hexdigest()}"
        signature = hmac.new(self.signing_key(date), to_sign.encode(), hashlib.sha256).hexdigest()
        authorization = (
            f"Authorization: {ALGORITHM} Credential={self.access_key_id}/{scope}, "
            f"SignedHeaders={signed}, Signature={signature}\r\n"
        )
        return (
            f"X-Amz-Date: {stamp}\r\n".encode("latin-1")
            + self._token_line
            + authorization.encode("latin-1")
        )
