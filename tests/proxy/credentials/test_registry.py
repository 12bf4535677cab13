"""CredentialRegistry: token sources shared by identity (one grant for every provider on the
same credential), signers cached per key and region, a status without secrets, and close."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest

from llm_proxy.proxy.credentials import (
    AwsCredentials,
    CredentialRegistry,
    GoogleCredentialsError,
    GoogleInfo,
    load_google_info,
)
from tests.helpers.google_oauth import FakeGoogleOAuth

SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
TOKEN = "session-token-value"


@pytest.fixture
async def registry() -> AsyncIterator[CredentialRegistry]:
    registry = CredentialRegistry()
    yield registry
    await registry.close()


def info(data: dict[str, str]) -> GoogleInfo:
    return load_google_info(credentials_file=None, credentials_json=json.dumps(data), env={})


async def test_one_source_per_credential(
    fake: FakeGoogleOAuth, registry: CredentialRegistry
) -> None:
    # Two providers, or two config snapshots, loading the same key: one source, one grant.
    first = registry.google(info(fake.service_account_info()))
    again = registry.google(info(fake.service_account_info()))
    assert again is first
    user = registry.google(info({**fake.authorized_user_info(), "token_uri": fake.token_uri}))
    assert user is not first
    assert await first.wait_header(5) == await again.wait_header(5)
    await user.wait_header(5)
    assert fake.grants == 2
    assert sorted(r.kind for r in fake.requests) == ["authorized_user", "service_account"]


async def test_signers_are_cached_per_key_and_region(registry: CredentialRegistry) -> None:
    creds = AwsCredentials("AKIAIOSFODNN7EXAMPLE", SECRET, TOKEN)
    signer = registry.signer(creds, "us-east-1")
    assert (
        registry.signer(AwsCredentials("AKIAIOSFODNN7EXAMPLE", SECRET, TOKEN), "us-east-1")
        is signer
    )
    assert registry.signer(creds, "eu-west-3") is not signer
    # Rotated temporary credentials (same key id, new token): a new signer.
    assert (
        registry.signer(AwsCredentials("AKIAIOSFODNN7EXAMPLE", SECRET, "new"), "us-east-1")
        is not signer
    )
    lines = signer.headers(
        "POST", "h", "/model/m/invoke", "", b"", datetime(2026, 1, 1, tzinfo=UTC)
    )
    assert b"Credential=AKIAIOSFODNN7EXAMPLE/20260101/us-east-1/bedrock/aws4_request" in lines


async def test_status_names_without_secrets(
    fake: FakeGoogleOAuth, registry: CredentialRegistry
) -> None:
    source = registry.google(info(fake.service_account_info()))
    header = await source.wait_header(5)
    registry.signer(AwsCredentials("AKIAIOSFODNN7EXAMPLE", SECRET, TOKEN), "us-east-1")
    status = registry.status()
    text = json.dumps(status)
    assert status[0]["kind"] == "google_service_account"
    assert status[0]["identity"] == fake.client_email
    assert status[0]["source"] == "credentials_json"
    assert status[0]["valid_until"] == source.expires_at
    assert status[0]["last_error"] is None
    assert status[1] == {
        "kind": "aws",
        "identity": "...MPLE",
        "region": "us-east-1",
        "valid_until": None,
        "last_error": None,
    }
    for secret in (SECRET, TOKEN, header.decode().split()[-1], "AKIAIOSFODNN7", "BEGIN"):
        assert secret not in text


async def test_close_stops_the_sources(fake: FakeGoogleOAuth) -> None:
    registry = CredentialRegistry()
    source = registry.google(info(fake.service_account_info()))
    await source.wait_header(5)
    await registry.close()
    assert registry.status() == []
    # A closed registry starts afresh (a new app in the same process).
    fresh = registry.google(info(fake.service_account_info()))
    assert fresh is not source
    await fresh.wait_header(5)
    await registry.close()
    assert fresh.header() is None
    with pytest.raises(GoogleCredentialsError, match="closed"):
        await fresh.wait_header(1)


async def test_a_rotated_key_is_another_source_and_retain_closes_the_old(
    fake: FakeGoogleOAuth, registry: CredentialRegistry
) -> None:
    old = registry.google(info(fake.service_account_info()))
    await old.wait_header(5)
    async with FakeGoogleOAuth() as rotated_server:
        rotated = rotated_server.service_account_info()
        same_account = {**rotated, "client_email": fake.client_email, "token_uri": fake.token_uri}
        assert info(same_account).identity != old.info.identity  # only the key differs
        new = registry.google(info(rotated))
        assert new is not old
        await new.wait_header(5)
        await registry.retain([info(rotated)])
        assert old.header() is None
        assert [s["identity"] for s in registry.status()] == [rotated_server.client_email]
        assert registry.google(info(rotated)) is new
        await registry.close()
