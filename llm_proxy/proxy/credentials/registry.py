"""The app's cloud credentials (`CredentialRegistry`): one Google token source per distinct
credential and one SigV4 signer per AWS key and region, shared by every provider that uses them
and kept across config reloads, so a reload neither refetches a token nor re-derives a key.

It owns the HTTP session the token sources fetch with; `close()` (at app cleanup) stops their
background tasks and closes it. Entries live as long as the app: a credential dropped from the
config keeps its token source until `retain(...)` is told the credentials still in use.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import aiohttp

from llm_proxy.proxy.credentials.aws import AwsCredentials
from llm_proxy.proxy.credentials.google import GoogleInfo, GoogleTokenSource
from llm_proxy.proxy.credentials.sigv4 import SigV4Signer

_TOKEN_FETCH_CONNECTIONS = 4


class CredentialRegistry:
    def __init__(self, *, min_backoff: float = 1.0, max_backoff: float = 60.0) -> None:
        self._sources: dict[str, GoogleTokenSource] = {}
        self._signers: dict[tuple[str, str, str, str | None], SigV4Signer] = {}
        self._backoff = (min_backoff, max_backoff)
        self._session: aiohttp.ClientSession | None = None

    def google(self, info: GoogleInfo) -> GoogleTokenSource:
        """The token source for this credential, started on first use (call it on the app's
        running loop)."""
        source = self._sources.get(info.identity)
        if source is None:
            source = GoogleTokenSource(
                info, min_backoff=self._backoff[0], max_backoff=self._backoff[1]
            )
            if self._session is None:
                connector = aiohttp.TCPConnector(limit=_TOKEN_FETCH_CONNECTIONS)
                self._session = aiohttp.ClientSession(connector=connector)
            source.start(self._session)
            self._sources[info.identity] = source
        return source

    def signer(self, creds: AwsCredentials, region: str) -> SigV4Signer:
        """The signer for these keys in this region (its signing key cached per day)."""
        key = (creds.access_key_id, region, creds.secret_access_key, creds.session_token)
        signer = self._signers.get(key)
        if signer is None:
            signer = self._signers[key] = SigV4Signer(
                creds.access_key_id, creds.secret_access_key, creds.session_token, region
            )
        return signer

    async def retain(self, infos: Iterable[GoogleInfo]) -> None:
        """Close the token sources of every credential not in `infos` (after a reload: a
        removed provider, a rotated key), so they stop refreshing."""
        keep = {info.identity for info in infos}
        for identity in [i for i in self._sources if i not in keep]:
            await self._sources.pop(identity).close()

    async def close(self) -> None:
        for source in self._sources.values():
            await source.close()
        self._sources.clear()
        if self._session is not None:
            await self._session.close()
            self._session = None

    def status(self) -> list[dict[str, Any]]:
        """For /health/detailed: each credential's kind, who it is (a service account's email,
        an access key id's last 4 characters), where it was found, until when its token is
        valid (wall-clock seconds, as `last_seen`), its last error."""
        out: list[dict[str, Any]] = [
            {
                "kind": f"google_{source.info.kind}",
                "identity": source.info.label,
                "source": source.info.source,
                "valid_until": source.expires_at if source.header() is not None else None,
                "last_error": source.last_error,
            }
            for source in self._sources.values()
        ]
        out.extend(
            {
                "kind": "aws",
                "identity": f"...{signer.access_key_id[-4:]}",
                "region": signer.region,
                "valid_until": None,
                "last_error": None,
            }
            for signer in self._signers.values()
        )
        return out
