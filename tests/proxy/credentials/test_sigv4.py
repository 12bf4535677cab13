"""SigV4Signer against botocore's SigV4Auth, the independent reference: the same request at the
same instant must get a byte-identical Authorization (and the same X-Amz-Date and token)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from urllib.parse import quote, urlencode

import botocore.auth  # type: ignore[import-untyped]  # no stubs: a test reference only
import pytest
from botocore.awsrequest import AWSRequest  # type: ignore[import-untyped]
from botocore.credentials import Credentials  # type: ignore[import-untyped]
from hypothesis import given, settings
from hypothesis import strategies as st

from llm_proxy.proxy.credentials.sigv4 import SigV4Signer, canonical_uri

NOW = datetime(2026, 12, 6, 10, 4, 5, tzinfo=UTC)
HOST = "bedrock-runtime.us-east-1.amazonaws.com"
AKID = "AKIAIOSFODNN7EXAMPLE"
SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
TOKEN = "IQoJb3JpZ2luX2VjEJr//////////wEaCXVzLWVhc3QtMSJHMEUCIQD+token/with=chars"


def parse(lines: bytes) -> dict[str, str]:
    out = {}
    for line in lines.decode("latin-1").split("\r\n")[:-1]:
        name, _, value = line.partition(": ")
        out[name] = value
    assert lines.endswith(b"\r\n")
    return out


def botocore_headers(
    monkeypatch: pytest.MonkeyPatch,
    *,
    path: str,
    query: str = "",
    params: dict[str, str] | None = None,
    body: bytes = b"",
    token: str | None = None,
    region: str = "us-east-1",
    content_type: str | None = None,
    now: datetime = NOW,
) -> dict[str, str]:
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda: now.replace(tzinfo=None))
    url = f"https://{HOST}{path}" + (f"?{query}" if query else "")
    headers = {"Content-Type": content_type} if content_type is not None else {}
    request = AWSRequest("POST", url, headers=headers, data=body, params=params or {})
    botocore.auth.SigV4Auth(Credentials(AKID, SECRET, token), "bedrock", region).add_auth(request)
    names = ("X-Amz-Date", "X-Amz-Security-Token", "Authorization")
    return {name: request.headers[name] for name in names if name in request.headers}


def ours(
    *,
    path: str,
    query: str = "",
    body: bytes = b"",
    token: str | None = None,
    region: str = "us-east-1",
    content_type: str | None = None,
    now: datetime = NOW,
) -> dict[str, str]:
    signer = SigV4Signer(AKID, SECRET, token, region)
    return parse(signer.headers("POST", HOST, path, query, body, now, content_type))


MODEL_PATHS = [
    "/model/anthropic.claude-3-5-sonnet-20240620-v1%3A0/invoke",
    "/model/anthropic.claude-3-5-sonnet-20240620-v1%3A0/invoke-with-response-stream",
    "/model/us.anthropic.claude-sonnet-4-20250514-v1%3A0/converse-stream",
    # An inference profile ARN as the model id: ':' and '/' percent-encoded in one segment.
    "/model/arn%3Aaws%3Abedrock%3Aus-east-1%3A123456789012%3Ainference-profile%2Fus.x-v1%3A0"
    "/converse",
    "/model/a%20b%2Bc%40d%21%24%26%27%28%29%2A%2C%3B%3D/invoke",
    "/model/tilde~kept/./dot/../invoke",
    "//double//slashes/",
]


@pytest.mark.parametrize("path", MODEL_PATHS)
@pytest.mark.parametrize("token", [None, TOKEN])
def test_paths_match_botocore(
    monkeypatch: pytest.MonkeyPatch, path: str, token: str | None
) -> None:
    body = b'{"messages":[{"role":"user","content":[{"text":"hi"}]}]}'
    expected = botocore_headers(monkeypatch, path=path, body=body, token=token)
    assert ours(path=path, body=body, token=token) == expected
    assert ("X-Amz-Security-Token" in expected) == (token is not None)


def test_a_model_id_colon_is_signed_double_encoded() -> None:
    assert canonical_uri("/model/x-v1%3A0/invoke") == "/model/x-v1%253A0/invoke"


@pytest.mark.parametrize(
    "params",
    [
        {"b": "2", "a": "1"},
        {"name with space": "v/a:l=u&e", "x": ""},
        {"\u00e9t\u00e9": "\u2603", "~tilde": "-_."},
    ],
)
def test_query_strings_match_botocore(
    monkeypatch: pytest.MonkeyPatch, params: dict[str, str]
) -> None:
    expected = botocore_headers(monkeypatch, path="/model/m/invoke", params=params)
    strict = urlencode(params, quote_via=quote, safe="-_.~")
    loose = urlencode(params)  # '+' for space, another encoding of the same query
    assert ours(path="/model/m/invoke", query=strict) == expected
    assert ours(path="/model/m/invoke", query=loose.replace("+", "%20")) == expected


def test_content_type_signed_when_given(monkeypatch: pytest.MonkeyPatch) -> None:
    expected = botocore_headers(
        monkeypatch, path="/model/m/invoke", body=b"{}", content_type="application/json"
    )
    assert "content-type;host;x-amz-date" in expected["Authorization"]
    assert ours(path="/model/m/invoke", body=b"{}", content_type="application/json") == expected


def test_empty_body_and_other_region(monkeypatch: pytest.MonkeyPatch) -> None:
    expected = botocore_headers(monkeypatch, path="/foundation-models", region="eu-west-3")
    assert ours(path="/foundation-models", region="eu-west-3") == expected


def test_signing_key_is_derived_once_per_date(monkeypatch: pytest.MonkeyPatch) -> None:
    signer = SigV4Signer(AKID, SECRET, None, "us-east-1")
    signer.headers("POST", HOST, "/model/m/invoke", "", b"", NOW)
    key = signer.signing_key(NOW.strftime("%Y%m%d"))
    later = NOW + timedelta(hours=1)
    signer.headers("POST", HOST, "/model/m/invoke", "", b"", later)
    assert signer.signing_key(NOW.strftime("%Y%m%d")) is key
    # The next UTC day: a new key, still what botocore signs with.
    tomorrow = NOW + timedelta(days=1)
    got = parse(signer.headers("POST", HOST, "/model/m/invoke", "", b"x", tomorrow))
    assert got == botocore_headers(monkeypatch, path="/model/m/invoke", body=b"x", now=tomorrow)
    assert signer.signing_key(tomorrow.strftime("%Y%m%d")) != key


def test_repr_hides_the_secret_and_token() -> None:
    text = repr(SigV4Signer(AKID, SECRET, TOKEN, "us-east-1"))
    assert AKID in text
    assert SECRET not in text
    assert TOKEN not in text


segment = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), min_size=1, max_size=12
)


@settings(max_examples=60, deadline=None)
@given(segments=st.lists(segment, min_size=1, max_size=4), body=st.binary(max_size=64))
def test_any_encoded_path_matches_botocore(segments: list[str], body: bytes) -> None:
    path = "/" + "/".join(quote(s, safe="") for s in segments)
    with pytest.MonkeyPatch.context() as monkeypatch:
        expected = botocore_headers(monkeypatch, path=path, body=body, token=TOKEN)
    assert ours(path=path, body=body, token=TOKEN) == expected


def test_one_signer_over_many_paths_and_the_real_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    # Its cache of canonical URIs is bounded (reset when full): still right after that.
    signer = SigV4Signer(AKID, SECRET, None, "us-east-1")
    paths = [f"/model/m{i}%3A0/invoke" for i in range(300)] + ["/model/m0%3A0/invoke"]
    for path in paths:
        got = parse(signer.headers("POST", HOST, path, "", b"{}", NOW))
        assert got == botocore_headers(monkeypatch, path=path, body=b"{}")
    before = datetime.now(UTC).replace(microsecond=0)
    stamp = parse(signer.headers("POST", HOST, paths[0], "", b""))["X-Amz-Date"]
    signed_at = datetime.strptime(stamp, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    assert before <= signed_at <= datetime.now(UTC)
