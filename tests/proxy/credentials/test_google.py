"""load_google_info on real files and inline JSON; GoogleTokenSource against FakeGoogleOAuth (a
real token endpoint on loopback that checks the assertion with pyjwt, not with our code)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from structlog.testing import capture_logs

from llm_proxy.config.clouds import CredentialsError, google_credentials
from llm_proxy.config.model import GOOGLE_TOKEN_URI
from llm_proxy.proxy.credentials.google import (
    GoogleCredentialsError,
    GoogleInfo,
    GoogleTokenSource,
    load_google_info,
)
from tests.helpers import eventually, free_port, serve
from tests.helpers.google_oauth import FakeGoogleOAuth


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


def inline(data: dict[str, Any], env: dict[str, str] | None = None) -> GoogleInfo:
    return load_google_info(credentials_file=None, credentials_json=json.dumps(data), env=env or {})


def bearer(header: bytes) -> str:
    prefix, _, rest = header.partition(b"Bearer ")
    assert prefix == b"Authorization: "
    assert rest.endswith(b"\r\n")
    return rest[:-2].decode()


@pytest.fixture
async def start(
    session: aiohttp.ClientSession,
) -> AsyncIterator[Any]:
    sources: list[GoogleTokenSource] = []

    def run(info: GoogleInfo, **kwargs: float) -> GoogleTokenSource:
        source = GoogleTokenSource(info, **kwargs)
        source.start(session)
        sources.append(source)
        return source

    yield run
    for source in sources:
        await source.close()


# -- loading ---------------------------------------------------------------------------------


async def test_service_account_inline_and_from_a_file(
    fake: FakeGoogleOAuth, tmp_path: Path
) -> None:
    info = inline(fake.service_account_info())
    assert info.kind == "service_account"
    assert info.credentials is not None
    assert info.credentials.client_email == fake.client_email
    assert info.label == fake.client_email
    assert info.token_uri == fake.token_uri
    assert info.project_id == "fake-project"
    assert info.source == "credentials_json"
    path = tmp_path / "sa.json"
    path.write_text(json.dumps(fake.service_account_info()))
    from_file = load_google_info(credentials_file=str(path), credentials_json=None, env={})
    assert from_file.source == str(path)
    assert from_file.identity == info.identity
    assert fake.private_key_pem not in repr(info)


@pytest.mark.parametrize("missing", ["client_email", "private_key"])
async def test_missing_service_account_fields_are_named(
    fake: FakeGoogleOAuth, missing: str
) -> None:
    data = fake.service_account_info()
    del data[missing]
    with pytest.raises(
        GoogleCredentialsError, match=rf"^credentials_json: \(service_account\) lacks {missing}$"
    ):
        inline(data)


async def test_a_bad_private_key_is_not_echoed(fake: FakeGoogleOAuth) -> None:
    data = fake.service_account_info()
    data["private_key"] = data["private_key"].replace("A", "B", 5)[:-60]
    with pytest.raises(GoogleCredentialsError, match="private_key is not a PEM") as caught:
        inline(data)
    assert "PRIVATE KEY" not in str(caught.value)
    broken = json.dumps(fake.service_account_info())[:-3]
    with pytest.raises(
        GoogleCredentialsError, match=r"^credentials_json: is not valid JSON$"
    ) as caught:
        load_google_info(credentials_file=None, credentials_json=broken, env={})
    assert "PRIVATE" not in str(caught.value)


def test_a_key_the_config_takes_but_a_jwt_cannot_use(fake: FakeGoogleOAuth) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    pem = (
        ec.generate_private_key(ec.SECP256R1())
        .private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        .decode()
    )
    data = {**fake.service_account_info(), "private_key": pem}
    assert google_credentials(json.dumps(data)).private_key == pem  # valid config
    with pytest.raises(GoogleCredentialsError) as caught:
        inline(data)
    assert str(caught.value) == (
        "credentials_json: (service_account) private_key is not an RSA key (RS256)"
    )


@pytest.mark.parametrize(
    "token_uri",
    [
        "http://127.0.0.1:9/token",
        "http://localhost/token",
        "http://[::1]:9/token",
        "https://oauth2.example/token",
        "http://127.0.0.1:80@attacker.example/token",  # the host is attacker.example
        "http://127.0.0.1.attacker.example/token",
        "http://oauth2.googleapis.com/token",
        "https:///token",
        "ftp://127.0.0.1/token",
    ],
)
def test_the_token_uris_config_validation_accepts(token_uri: str) -> None:
    data = {"type": "authorized_user", "client_id": "c", "client_secret": "s", "refresh_token": "r"}
    data["token_uri"] = token_uri
    refused = None
    try:
        google_credentials(json.dumps(data))
    except CredentialsError as exc:
        refused = f"credentials_json: {exc}"
    if refused is None:
        assert inline(data).token_uri == token_uri
        return
    with pytest.raises(GoogleCredentialsError) as caught:
        inline(data)
    assert str(caught.value) == refused


def test_authorized_user_fields_and_default_token_uri() -> None:
    data = {"type": "authorized_user", "client_id": "c", "client_secret": "s", "refresh_token": "r"}
    info = inline({**data, "quota_project_id": "quota"})
    assert (info.kind, info.token_uri, info.project_id) == (
        "authorized_user",
        GOOGLE_TOKEN_URI,
        "quota",
    )
    assert "'s'" not in repr(info)
    assert "'r'" not in repr(info)
    del data["refresh_token"]
    with pytest.raises(GoogleCredentialsError, match="lacks refresh_token"):
        inline(data)


@pytest.mark.parametrize(
    ("data", "match"),
    [
        ({"type": "external_account"}, "authorized_user, not 'external_account'$"),
        ({"client_email": "x"}, "must have type service_account or authorized_user$"),
        ([], "must be a JSON object"),
    ],
)
def test_unsupported_credentials(data: Any, match: str) -> None:
    with pytest.raises(GoogleCredentialsError, match=match):
        load_google_info(credentials_file=None, credentials_json=json.dumps(data), env={})


def test_file_and_json_are_exclusive(tmp_path: Path) -> None:
    with pytest.raises(GoogleCredentialsError, match="not both"):
        load_google_info(credentials_file="x", credentials_json="{}", env={})
    with pytest.raises(GoogleCredentialsError, match="credentials_file: cannot read"):
        load_google_info(credentials_file=str(tmp_path / "no"), credentials_json=None, env={})


async def test_application_default_order(fake: FakeGoogleOAuth, tmp_path: Path) -> None:
    home = tmp_path / "home"
    gcloud = home / ".config" / "gcloud"
    gcloud.mkdir(parents=True)
    user = {**fake.authorized_user_info(), "token_uri": fake.token_uri}
    (gcloud / "application_default_credentials.json").write_text(json.dumps(user))
    explicit = tmp_path / "sa.json"
    explicit.write_text(json.dumps(fake.service_account_info()))

    def adc(**env: str) -> GoogleInfo:
        return load_google_info(credentials_file=None, credentials_json=None, env=env)

    both = adc(HOME=str(home), GOOGLE_APPLICATION_CREDENTIALS=str(explicit))
    assert both.kind == "service_account"
    assert adc(HOME=str(home)).kind == "authorized_user"
    elsewhere = tmp_path / "sdk"
    elsewhere.mkdir()
    (elsewhere / "application_default_credentials.json").write_text(json.dumps(user))
    assert adc(HOME=str(tmp_path), CLOUDSDK_CONFIG=str(elsewhere)).kind == "authorized_user"
    metadata = adc(HOME=str(tmp_path), GCE_METADATA_HOST="10.0.0.1:8080", GOOGLE_CLOUD_PROJECT="p")
    assert metadata.kind == "metadata"
    assert metadata.token_uri.startswith("http://10.0.0.1:8080/computeMetadata/v1/")
    assert metadata.project_id == "p"
    assert adc(HOME=str(tmp_path)).token_uri.startswith("http://metadata.google.internal/")
    with pytest.raises(GoogleCredentialsError, match=r"^GOOGLE_APPLICATION_CREDENTIALS: cannot"):
        adc(HOME=str(home), GOOGLE_APPLICATION_CREDENTIALS=str(tmp_path / "gone.json"))
    # The file gcloud wrote is checked by the same rules, and its path says which it was.
    (elsewhere / "application_default_credentials.json").write_text(
        json.dumps({**user, "refresh_token": ""})
    )
    with pytest.raises(GoogleCredentialsError) as caught:
        adc(HOME=str(tmp_path), CLOUDSDK_CONFIG=str(elsewhere))
    well_known = elsewhere / "application_default_credentials.json"
    assert str(caught.value) == f"{well_known}: (authorized_user) lacks refresh_token"


async def test_the_environment_project_overrides_the_file(fake: FakeGoogleOAuth) -> None:
    info = inline(fake.service_account_info(), {"GOOGLE_CLOUD_PROJECT": "override"})
    assert info.project_id == "override"


# -- tokens ----------------------------------------------------------------------------------


async def test_first_fetch_gives_a_token_the_endpoint_honours(
    fake: FakeGoogleOAuth, start: Any
) -> None:
    source = start(inline(fake.service_account_info()))
    header = await source.wait_header(5)
    assert fake.valid(bearer(header))
    assert source.header() is header
    assert await source.wait_header(5) is header
    assert source.last_error is None
    assert fake.requests[0].kind == "service_account"
    assert fake.grants == 1


async def test_concurrent_callers_share_one_grant(fake: FakeGoogleOAuth, start: Any) -> None:
    source = start(inline(fake.service_account_info()))
    headers = await asyncio.gather(*(source.wait_header(5) for _ in range(50)))
    assert len(set(headers)) == 1
    assert fake.grants == 1


async def test_refreshes_before_expiry(fake: FakeGoogleOAuth, start: Any) -> None:
    fake.expires_in = 2  # refreshed 0.2 s before it expires (10% of a short lifetime)
    source = start(inline(fake.service_account_info()))
    first = await source.wait_header(5)
    await fake.wait_for_grants(2)
    second = await eventually(lambda: source.header() not in (None, first) and source.header())
    assert fake.valid(bearer(second))
    assert len(fake.requests) == fake.grants  # no failures, no extra grants


async def test_a_refused_grant_surfaces_the_cause_at_once(
    fake: FakeGoogleOAuth, start: Any
) -> None:
    fake.fail_next(1, 400, "invalid_grant", "Invalid JWT Signature.")
    with capture_logs() as logs:
        source = start(inline(fake.service_account_info()), min_backoff=30)
        async with asyncio.timeout(2):
            with pytest.raises(GoogleCredentialsError) as caught:
                await source.wait_header(60)
            # In backoff: the next caller is answered at once, with the same cause.
            with pytest.raises(GoogleCredentialsError):
                await source.wait_header(60)
    message = str(caught.value)
    assert "HTTP 400: invalid_grant: Invalid JWT Signature." in message
    assert fake.token_uri in message
    assert "eyJ" not in message  # no JWT
    assert source.last_error is not None and "HTTP 400" in source.last_error
    assert source.header() is None
    [line] = [entry for entry in logs if entry["event"] == "google_token_failed"]
    assert line["credential"] == fake.client_email
    assert line["error"] == source.last_error
    assert 15 <= line["retry_in_secs"] <= 30
    assert "PRIVATE" not in str(line) and "eyJ" not in str(line)


async def test_a_stalled_endpoint_never_hangs_a_caller(fake: FakeGoogleOAuth, start: Any) -> None:
    fake.stall_next(1)
    source = start(inline(fake.service_account_info()), min_backoff=0.01, max_backoff=0.05)
    loop = asyncio.get_running_loop()
    began = loop.time()
    with pytest.raises(GoogleCredentialsError, match=r"after 0\.2s: the token endpoint has not"):
        await source.wait_header(0.2)
    assert loop.time() - began < 1.0
    fake.release()  # the stalled request is answered 503, the retry succeeds
    await fake.wait_for_grants(1)
    header = await eventually(source.header)
    assert fake.valid(bearer(header))
    assert [r.status for r in fake.requests] == [503, 200]


async def test_recovers_after_failures(fake: FakeGoogleOAuth, start: Any) -> None:
    fake.fail_next(3, 500, "internal_failure", "backend error")
    source = start(inline(fake.service_account_info()), min_backoff=0.01, max_backoff=0.05)
    await fake.wait_for_grants(1)
    header = await eventually(source.header)
    assert fake.valid(bearer(header))
    assert [r.status for r in fake.requests] == [500, 500, 500, 200]
    assert source.last_error is None


async def test_serves_the_old_token_while_refresh_fails(fake: FakeGoogleOAuth, start: Any) -> None:
    fake.expires_in = 4  # refreshed at 3.6 s, withdrawn at 3.8 s
    source = start(inline(fake.service_account_info()), min_backoff=0.05, max_backoff=0.1)
    header = await source.wait_header(5)
    fake.fail_next(1000, 500, "internal_failure", "backend error")
    last_error = await eventually(lambda: source.last_error)  # the refresh failed
    assert "HTTP 500" in last_error
    assert source.header() is header
    assert fake.valid(bearer(header))
    # Withdrawn just before it expires: callers then get the cause, not a dead token.
    await eventually(lambda: source.header() is None, timeout=5)
    with pytest.raises(GoogleCredentialsError, match="HTTP 500: internal_failure"):
        await source.wait_header(1)


async def test_an_unreachable_endpoint_is_named(start: Any, fake: FakeGoogleOAuth) -> None:
    data = {**fake.service_account_info(), "token_uri": f"http://127.0.0.1:{free_port()}/token"}
    source = start(inline(data), min_backoff=30)
    with pytest.raises(GoogleCredentialsError, match="ClientConnectorError"):
        await source.wait_header(5)


async def test_authorized_user_refresh(fake: FakeGoogleOAuth, start: Any) -> None:
    info = inline({**fake.authorized_user_info(), "token_uri": fake.token_uri})
    header = await start(info).wait_header(5)
    assert fake.valid(bearer(header))
    assert fake.requests[-1].kind == "authorized_user"


async def test_a_revoked_refresh_token(fake: FakeGoogleOAuth, start: Any) -> None:
    data = {**fake.authorized_user_info(), "token_uri": fake.token_uri, "refresh_token": "1//x"}
    with pytest.raises(GoogleCredentialsError, match="invalid_grant: Token has been expired"):
        await start(inline(data), min_backoff=30).wait_header(5)
    assert "1//x" not in str(fake.problems)
    fake.problems.clear()


async def test_metadata_server(fake: FakeGoogleOAuth, start: Any) -> None:
    env = {"HOME": "/nonexistent", "GCE_METADATA_HOST": fake.metadata_host}
    info = load_google_info(credentials_file=None, credentials_json=None, env=env)
    header = await start(info).wait_header(5)
    assert fake.valid(bearer(header))
    assert fake.requests[-1].kind == "metadata"


async def test_close_ends_the_task_and_waiters(
    fake: FakeGoogleOAuth, session: aiohttp.ClientSession
) -> None:
    fake.stall_next(1)
    source = GoogleTokenSource(inline(fake.service_account_info()))
    source.start(session)
    waiter = asyncio.ensure_future(source.wait_header(30))
    await eventually(lambda: fake.stalled)
    await source.close()
    with pytest.raises(GoogleCredentialsError):
        async with asyncio.timeout(2):
            await waiter
    fake.release()


@pytest.mark.parametrize(
    ("answer", "match"),
    [
        # A token that would inject a header line into the upstream request.
        ({"access_token": "ya29.x\r\nX-Evil: 1", "expires_in": 3600}, "usable access_token"),
        ({"access_token": "ya29.x", "expires_in": 0}, "positive expires_in"),
        ({"access_token": "ya29.x"}, "positive expires_in"),
        ([1], "without a JSON object"),
    ],
)
async def test_a_malformed_token_answer_is_refused(
    fake: FakeGoogleOAuth, start: Any, answer: Any, match: str
) -> None:
    async def token(request: web.Request) -> web.Response:
        return web.json_response(answer)

    app = web.Application()
    app.router.add_post("/token", token)
    async with serve(app) as url:
        data = {**fake.service_account_info(), "token_uri": f"{url}/token"}
        with pytest.raises(GoogleCredentialsError, match=match):
            await start(inline(data), min_backoff=30).wait_header(5)


async def test_invalidate_replaces_a_refused_token_at_once(
    fake: FakeGoogleOAuth, start: Any
) -> None:
    source = start(inline(fake.service_account_info()))
    first = await source.wait_header(5)
    fake.revoke_all()  # the upstream now answers 401 to it
    assert not fake.valid(bearer(first))
    source.invalidate(first)
    assert source.header() is None
    second = await source.wait_header(5)
    assert fake.valid(bearer(second))
    assert fake.grants == 2
    source.invalidate(first)  # a late 401 for the old token: nothing to do
    assert source.header() is second
    source.invalidate(second)  # a 401 a new token does not cure: not a grant per request
    assert source.header() is second
    assert fake.grants == 2
