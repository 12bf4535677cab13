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
is each request shape's canonical request around its date and payload hash, and the date stamp
once a second, so one request costs a SHA-256 of the body, one of the canonical request and
one HMAC (a copy of the day's keyed HMAC: the key's own two hash blocks are not redone).
"""

from __future__ import annotations

import hashlib
import hmac
import time
from datetime import UTC, datetime
from typing import Final, NamedTuple
from urllib.parse import quote, unquote

ALGORITHM: Final = "AWS4-HMAC-SHA256"
# Request shapes kept per signer: a few model ids times a few actions; past this, reset.
_SHAPE_CACHE_SIZE: Final = 256
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


class _Shape(NamedTuple):
    """What one request shape (method, host, path, query, content type) signs alike on every
    call, precomputed: the canonical request around the date and the payload hash, and the
    signed header names."""

    before_date: str  # method, URI, query, the headers up to x-amz-date's value
    after_date: str  # the rest of the headers, the signed names, up to the payload hash
    signed: str


class SigV4Signer:
    """Signs requests for one access key, region and service. Holds the secret: its repr
    names the access key id only."""

    __slots__ = (
        "_date",
        "_key",
        "_mac",
        "_scope",
        "_second",
        "_secret",
        "_shapes",
        "_stamp",
        "_token",
        "_token_line",
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
        self._mac = hmac.new(b"", digestmod=hashlib.sha256)  # (keyed by `_derive`)
        self._scope = ""
        self._second = -1  # the clock's whole second `_stamp` is for
        self._stamp = ""
        self._shapes: dict[tuple[str, str, str, str, str | None], _Shape] = {}

    def __repr__(self) -> str:
        return (
            f"SigV4Signer(access_key_id={self.access_key_id!r}, region={self.region!r}, "
            f"service={self.service!r})"
        )

    def signing_key(self, date: str) -> bytes:
        """The key for a UTC date (YYYYMMDD), derived once per date."""
        if date != self._date:
            self._derive(date)
        return self._key

    def _derive(self, date: str) -> None:
        key = _hmac(self._secret, date)
        key = _hmac(key, self.region)
        key = _hmac(key, self.service)
        self._key = _hmac(key, "aws4_request")
        self._mac = hmac.new(self._key, digestmod=hashlib.sha256)
        self._scope = f"{date}/{self.region}/{self.service}/aws4_request"
        self._date = date

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
            second = int(time.time())
            if second != self._second:  # the stamp is formatted once a second
                self._stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(second))
                self._second = second
            stamp = self._stamp
        else:
            stamp = now.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
        key = (method, host, raw_path, raw_query, content_type)
        shape = self._shapes.get(key)
        if shape is None:
            shape = self._shape(key)
        request = f"{shape.before_date}{stamp}{shape.after_date}{hashlib.sha256(body).hexdigest()}"
        date = stamp[:8]
        if date != self._date:
            self._derive(date)
        scope = self._scope
        to_sign = f"{ALGORITHM}\n{stamp}\n{scope}\n{hashlib.sha256(request.encode()).hexdigest()}"
        mac = self._mac.copy()  # (keyed once a day: a copy skips the key's two hash blocks)
        mac.update(to_sign.encode())
        signature = mac.hexdigest()
        return (
            f"X-Amz-Date: {stamp}\r\n".encode("latin-1")
            + self._token_line
            + (
                f"Authorization: {ALGORITHM} Credential={self.access_key_id}/{scope}, "
                f"SignedHeaders={shape.signed}, Signature={signature}\r\n"
            ).encode("latin-1")
        )

    def _shape(self, key: tuple[str, str, str, str, str | None]) -> _Shape:
        """A request shape's canonical parts (kept: a few model ids times a few actions)."""
        method, host, raw_path, raw_query, content_type = key
        headers = [("host", " ".join(host.split())), ("x-amz-date", "")]
        if content_type is not None:
            headers.append(("content-type", " ".join(content_type.split())))
        if self._token:
            headers.append(("x-amz-security-token", self._token))
        headers.sort()
        signed = ";".join(name for name, _ in headers)
        lines = "".join(f"{name}:{value}\n" for name, value in headers)
        before, _, after = lines.partition("x-amz-date:\n")
        head = f"{method.upper()}\n{canonical_uri(raw_path)}\n{canonical_query(raw_query)}\n"
        shape = _Shape(f"{head}{before}x-amz-date:", f"\n{after}\n{signed}\n", signed)
        if len(self._shapes) >= _SHAPE_CACHE_SIZE:
            self._shapes.clear()
        self._shapes[key] = shape
        return shape
