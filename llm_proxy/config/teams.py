"""The `teams` section, and how keys fit in their teams.

A team holds what several keys share: allowed models, a request rate, tokens per minute, a
cost budget and parallel requests (each optional), whether its keys see each other's stored
objects, and free metadata. A key names its team with `team:`; a request of that key must pass
the key's limits and the team's, and its spend counts against both.

Checked across both sections (in database mode on the rows of both tables, so an error names
the row): a key's team must exist, and a key's `allowed_models` must be within its team's
(each entry one the team's allow: an exact name the team's patterns match, or an entry the team
lists word for word, or anything when the team allows `*`). A key of a team that restricts
models and says nothing itself gets the team's models.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Final

from llm_proxy.config.checker import Checker
from llm_proxy.config.issues import Path
from llm_proxy.config.master_keys import allowed_models, parse_budget, parse_metadata
from llm_proxy.config.model import MasterKey, Team
from llm_proxy.config.patterns import NameMatcher, compile_pattern
from llm_proxy.config.sections import parse_rate_limit

TEAM_PREFIX: Final = "team:"  # a team's limits are kept under `team:<name>` (the limiter's)
TEAM_KEYS: Final = frozenset(
    {
        "name",
        "allowed_models",
        "rate_limit",
        "tokens_per_minute",
        "max_budget_usd",
        "budget_period",
        "max_parallel_requests",
        "shared_objects",
        "metadata",
    }
)


def parse_teams(check: Checker, raw: Any) -> tuple[Team, ...]:
    if raw is None:
        return ()
    out: list[Team] = []
    names: set[str] = set()
    for i, item in enumerate(check.sequence(raw, ("teams",))):
        path: Path = ("teams", i)
        t = check.mapping(item, path, TEAM_KEYS)
        if t is None:
            continue
        check.required(t, path, "name")
        name = check.unique_name(t, path, names, "team")
        limit = None
        if t.get("rate_limit") is not None:
            limit = parse_rate_limit(check, t["rate_limit"], (*path, "rate_limit"))
        tpm = t.get("tokens_per_minute")
        if tpm is not None:
            tpm = check.positive_int(tpm, (*path, "tokens_per_minute"))
        parallel = t.get("max_parallel_requests")
        if parallel is not None:
            parallel = check.positive_int(parallel, (*path, "max_parallel_requests"))
        budget, period = parse_budget(check, t, path)
        out.append(
            Team(
                name,
                allowed_models(check, t.get("allowed_models"), (*path, "allowed_models")),
                limit,
                tpm,
                budget,
                period,
                parallel,
                check.boolean(
                    check.optional(t, "shared_objects", False), (*path, "shared_objects")
                ),
                parse_metadata(check, t.get("metadata"), (*path, "metadata")),
            )
        )
    return tuple(out)


def fit_keys_in_teams(
    check: Checker, keys: tuple[MasterKey, ...], teams: tuple[Team, ...]
) -> tuple[MasterKey, ...]:
    """Each key's team checked (it exists; the key's models are within the team's), and a
    key that names no models given its team's."""
    by_name = {t.name: t for t in teams}
    out = []
    for i, key in enumerate(keys):
        if key.name.startswith(TEAM_PREFIX) and key.name[len(TEAM_PREFIX) :] in by_name:
            check.fail(
                ("master_keys", i, "name"),
                f"{key.name!r} is the name the limits of team "
                f"{key.name[len(TEAM_PREFIX) :]!r} are kept under: name the key otherwise",
            )
        if key.team is None:
            out.append(key)
            continue
        team = by_name.get(key.team)
        if team is None:
            known = ", ".join(sorted(by_name)) or "none are configured"
            check.fail(("master_keys", i, "team"), f"names no team: {key.team!r} (teams: {known})")
            out.append(key)
            continue
        if team.allowed_models is None:
            out.append(key)
            continue
        if key.allowed_models is None:
            out.append(_with_models(key, team.allowed_models))
            continue
        matcher = NameMatcher(team.allowed_models)
        for j, entry in enumerate(key.allowed_models):
            if not _within(entry, team.allowed_models, matcher):
                check.fail(
                    ("master_keys", i, "allowed_models", j),
                    f"{entry!r} is not within the models of its team {team.name!r} "
                    f"({', '.join(team.allowed_models)})",
                )
        out.append(key)
    return tuple(out)


def _within(entry: str, team: tuple[str, ...], matcher: NameMatcher) -> bool:
    if "*" in team or entry in team:
        return True
    # An exact name the team's names or patterns serve (a pattern of the key's own must be
    # one of the team's, word for word: whether one pattern covers another is not decided).
    return compile_pattern(entry) is None and entry != "*" and entry in matcher


def _with_models(key: MasterKey, models: tuple[str, ...]) -> MasterKey:
    return dataclasses.replace(key, allowed_models=models, team_models=True)


def own_models(key: MasterKey) -> tuple[str, ...] | None:
    """The key's `allowed_models` as configured: None when it named none and has its team's
    (`MasterKey.team_models`), so that an export or an import writes what was written, and a
    key keeps following its team's models."""
    return None if key.team_models else key.allowed_models
