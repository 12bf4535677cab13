"""Master keys: compiled once per snapshot into a lookup by key hash.

The plaintext of a presented key is hashed (SHA-256) and looked up; the stored hash is then
compared in constant time. Neither the plaintext nor the hash is ever logged or labelled:
keys are known to logs and metrics by their configured name only.

Authentication is off only when the configuration says `require_auth: false`. Removing or
disabling keys never opens the proxy: with no enabled key left, every request gets a 401.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from llm_proxy.config.lockout import locked_line
from llm_proxy.config.master_keys import expiry_text
from llm_proxy.config.model import MasterKey, RateLimit, Team
from llm_proxy.config.patterns import NameMatcher
from llm_proxy.config.teams import TEAM_PREFIX
from llm_proxy.errors import ProxyError
from llm_proxy.proxy.routing import render_models


@dataclass(frozen=True, slots=True)
class KeyEntry:
    name: str
    digest: bytes
    enabled: bool
    allowed: NameMatcher | None  # None: every model
    rate_limit: RateLimit | None
    tokens_per_minute: int | None
    models_body: bytes | None  # /v1/models filtered for this key; None: the full list
    max_budget_usd: float | None = None  # spend per budget_period (UTC day or month)
    budget_period: Literal["daily", "monthly"] = "monthly"
    shared_objects: bool = False  # an account-wide key: every tenant's stored objects
    max_parallel_requests: int | None = None  # requests in flight at once; None: no limit
    # Precomputed, so that the hot path asks one question of a key without limits: any
    # limit at all (the ratelimit middleware), and a reservation to make at admission
    # (tokens per minute or a budget).
    limited: bool = False
    reserves: bool = False
    expires_at: float | None = None  # Unix time from which it is refused (None: never)
    metadata: Mapping[str, Any] = field(default_factory=dict)
    # Teams (`teams:`): a key's team, as an entry of its own whose name is `team:<name>`
    # (what the limiter keeps its state under) and whose `kind` is "team"; `limited` and
    # `reserves` above count the team's limits too, `own_limits`/`own_reserves` the key's.
    team: KeyEntry | None = None
    kind: str = "key"
    display: str = ""  # the name people gave it (a team's without `team:`)
    own_limits: bool = False
    own_reserves: bool = False
    # A team's keys, by name: with `shared_objects`, they see each other's stored objects.
    members: frozenset[str] = frozenset()
    # `limit_subjects()` and `reserving_subjects()`, worked out once (`_subjects`), and
    # `limits` without the team's (the key itself, if it has limits of its own).
    limits: tuple[KeyEntry, ...] = ()
    reserving: tuple[KeyEntry, ...] = ()
    own: tuple[KeyEntry, ...] = ()
    # Its team's name as the metrics' `team` label shows it ("": in no team), precomputed
    # for the hot path (`team_name` is the same, None for no team).
    team_label: str = ""

    def may_use(self, model: str) -> bool:
        if self.allowed is not None and model not in self.allowed:
            return False
        team = self.team
        return team is None or team.allowed is None or model in team.allowed

    @property
    def who(self) -> str:
        """How refusals name it: `key 'ci'`, `team 'search'`."""
        return f"{self.kind} {self.display or self.name!r}"

    @property
    def team_name(self) -> str | None:
        team = self.team
        return team.display if team is not None else None

    def limit_subjects(self) -> tuple[KeyEntry, ...]:
        """Whose limits a request of this key must pass: the key's (if it has any), then its
        team's (if that has any)."""
        team = self.team
        own = (self,) if self.own_limits else ()
        return (*own, team) if team is not None and team.limited else own

    def reserving_subjects(self) -> tuple[KeyEntry, ...]:
        """Who holds a reservation for a request of this key (tokens per minute, a budget)."""
        team = self.team
        own = (self,) if self.own_reserves else ()
        return (*own, team) if team is not None and team.reserves else own


def _subjects(entry: KeyEntry) -> None:
    """`entry.limits` and `entry.reserving` set (a frozen entry, once, as it is made)."""
    object.__setattr__(entry, "limits", entry.limit_subjects())
    object.__setattr__(entry, "reserving", entry.reserving_subjects())
    object.__setattr__(entry, "own", (entry,) if entry.own_limits else ())


def team_entry(team: Team, members: frozenset[str] = frozenset()) -> KeyEntry:
    """A team as the limiter sees it: an entry named `team:<name>`."""
    limited = bool(
        team.rate_limit
        or team.tokens_per_minute
        or team.max_budget_usd
        or team.max_parallel_requests
    )
    reserves = bool(team.tokens_per_minute or team.max_budget_usd)
    return KeyEntry(
        TEAM_PREFIX + team.name,
        b"",
        True,
        NameMatcher(team.allowed_models) if team.allowed_models is not None else None,
        team.rate_limit,
        team.tokens_per_minute,
        None,
        team.max_budget_usd,
        team.budget_period,
        team.shared_objects,
        team.max_parallel_requests,
        limited=limited,
        reserves=reserves,
        metadata=team.metadata,
        kind="team",
        display=team.name,
        own_limits=limited,
        own_reserves=reserves,
        members=members,
    )


LOCKED_MESSAGE: Final = (
    "No master key is enabled on this proxy (none is configured, or every key was revoked), "
    "so every request is refused. An operator must add or re-enable a key, or set "
    "`require_auth: false` to serve without authentication."
)
AUTH_OFF_WARNING: Final = (
    "authentication is OFF (require_auth: false): anyone who can reach the proxy can use "
    "every provider"
)


class KeyRing:
    """Every configured key by hash.

    `enabled`: authentication is enforced (`require_auth`, whatever the keys). `locked`: it is
    enforced and no key is enabled, so `authenticate` refuses everything. `warning` is what the
    operator should hear about this state (startup, reloads, health), or None.
    """

    def __init__(
        self,
        keys: Sequence[MasterKey],
        model_names: Sequence[str],
        require_auth: bool = True,
        teams: Sequence[Team] = (),
    ) -> None:
        self._by_digest: dict[bytes, KeyEntry] = {}
        self.teams = {
            t.name: team_entry(t, frozenset(k.name for k in keys if k.team == t.name))
            for t in teams
        }
        for k in keys:
            allowed = NameMatcher(k.allowed_models) if k.allowed_models is not None else None
            team = self.teams.get(k.team) if k.team is not None else None
            matchers = [m for m in (allowed, team.allowed if team else None) if m is not None]
            body = None
            if matchers:  # /v1/models: what the key and its team both allow
                body = render_models([n for n in model_names if all(n in m for m in matchers)])
            own_limits = bool(
                k.rate_limit or k.tokens_per_minute or k.max_budget_usd or k.max_parallel_requests
            )
            own_reserves = bool(k.tokens_per_minute or k.max_budget_usd)
            digest = k.digest
            self._by_digest[digest] = KeyEntry(
                k.name,
                digest,
                k.enabled,
                allowed,
                k.rate_limit,
                k.tokens_per_minute,
                body,
                k.max_budget_usd,
                k.budget_period,
                k.shared_objects,
                k.max_parallel_requests,
                limited=own_limits or (team is not None and team.limited),
                reserves=own_reserves or (team is not None and team.reserves),
                expires_at=k.expires_at,
                metadata=k.metadata,
                team=team,
                display=k.name,
                team_label=team.display if team is not None else "",
                own_limits=own_limits,
                own_reserves=own_reserves,
            )
        for entry in [*self._by_digest.values(), *self.teams.values()]:
            _subjects(entry)
        # When each key was last used, by digest: the `perf_counter()` of its last request's
        # arrival (`used_at` turns it into wall time). One dict for the process's life,
        # handed from snapshot to snapshot by `ConfigStore.swap` (`carry_usage`); written to
        # the database by `KeyUsageWriter`.
        self.used: dict[bytes, float] = {}
        self.enabled = require_auth
        self.locked = require_auth and not any(k.enabled for k in keys)
        # The keyring does not know the mode: the warning gives the fix for both.
        self.warning = (
            locked_line(keys, database=None)
            if self.locked
            else None
            if require_auth
            else AUTH_OFF_WARNING
        )

    def __iter__(self) -> Iterator[KeyEntry]:
        return iter(self._by_digest.values())

    def subjects(self) -> list[KeyEntry]:
        """Every key and every team: what the limiter keeps state for."""
        return [*self._by_digest.values(), *self.teams.values()]

    def carry_usage(self, old: KeyRing) -> None:
        """The last uses `old` saw, of the keys this ring still has, kept in `old`'s own
        dict, which this ring takes over: a request authenticated on `old` while this ring
        took its place notes its use where this ring (and `KeyUsageWriter`) sees it. Keys
        this ring no longer has are dropped from it (a late use of one is written, and its
        row pruned, by the writer's next flush)."""
        used, mine = old.used, self._by_digest
        for digest in [d for d in used if d not in mine]:
            del used[digest]
        used.update(self.used)  # (anything this ring noted before taking over: normally none)
        self.used = used

    def used_at(self, digest: bytes) -> float | None:
        """When the key with `digest` was last used by this process (Unix time), or None."""
        seen = self.used.get(digest)
        if seen is None:
            return None
        return time.time() - (time.perf_counter() - seen)

    def authenticate(self, presented: str | None, arrived: float | None = None) -> KeyEntry:
        """The entry for a presented key, or a 401 ProxyError; `arrived` (the request's
        `perf_counter()`): noted as the key's last use."""
        if self.locked:
            raise ProxyError(401, LOCKED_MESSAGE, code="invalid_api_key")
        if not presented:
            raise ProxyError(
                401,
                "You didn't provide an API key. Send it as `Authorization: Bearer <key>` "
                "(or `x-api-key: <key>`).",
                code="invalid_api_key",
            )
        digest = digest_key(presented)
        entry = self._by_digest.get(digest)
        if entry is None or not hmac.compare_digest(entry.digest, digest):
            raise ProxyError(401, "Incorrect API key provided.", code="invalid_api_key")
        if not entry.enabled:
            raise ProxyError(401, "This API key is disabled.", code="invalid_api_key")
        expires = entry.expires_at
        if expires is not None and time.time() >= expires:
            raise ProxyError(
                401,
                f"This API key expired at {expiry_text(expires)}.",
                code="expired_api_key",
            )
        if arrived is not None:
            self.used[digest] = arrived
        return entry


def digest_key(key: str) -> bytes:
    # surrogateescape: a header with non-UTF-8 bytes is a wrong key (401), not an error.
    return hashlib.sha256(key.encode("utf-8", "surrogateescape")).digest()


_BEARER: Final = "bearer "


def presented_key(authorization: str | None, x_api_key: str | None) -> str | None:
    if authorization is not None and authorization[:7].lower() == _BEARER:
        return authorization[7:].strip()
    return x_api_key.strip() if x_api_key is not None else None


def model_not_allowed(model: str, key_name: str) -> ProxyError:
    return ProxyError(
        403,
        f"The API key {key_name!r} is not allowed to use the model `{model}`.",
        type="permission_error",
        code="model_not_allowed",
        param="model",
    )
