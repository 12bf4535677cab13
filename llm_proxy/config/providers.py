"""The `providers` section: names, URLs, keys, model mappings, per-provider settings."""

from __future__ import annotations

import re
from typing import Any, Final, Literal

from yarl import URL

from llm_proxy.config.checker import Checker
from llm_proxy.config.issues import Path
from llm_proxy.config.model import ModelRule, Provider, Timeouts
from llm_proxy.config.patterns import compile_pattern
from llm_proxy.config.sections import (
    PROVIDER_KEYS,
    parse_health_check,
    parse_pricing,
    parse_timeouts,
)


def parse_providers(check: Checker, raw: Any) -> tuple[Provider, ...]:
    if raw is None:
        return ()
    out: list[Provider] = []
    seen: set[str] = set()
    for i, item in enumerate(check.sequence(raw, ("providers",))):
        path: Path = ("providers", i)
        p = check.mapping(item, path, PROVIDER_KEYS)
        if p is None:
            continue
        for required in ("name", "api_base"):
            if p.get(required) is None:
                check.fail((*path, required), "is required")
        name = check.name(p["name"], (*path, "name")) if p.get("name") is not None else ""
        if name in seen:
            check.fail((*path, "name"), f"duplicate provider name {name!r}")
        seen.add(name)
        api_base = ""
        if p.get("api_base") is not None:
            api_base = check.string(p["api_base"], (*path, "api_base")).rstrip("/")
            shown = redact_url(api_base)
            if api_base and not api_base.startswith(("http://", "https://")):
                check.fail((*path, "api_base"), f"must start with http:// or https://: {shown}")
            elif api_base and not _has_host(api_base):
                check.fail((*path, "api_base"), f"has no host: {shown}")
            elif api_base and _has_userinfo(api_base):
                check.fail(
                    (*path, "api_base"),
                    f"must not carry user:password@ ({shown}): put the provider's key in "
                    "api_key (sent as Authorization: Bearer)",
                )
            elif "#" in api_base:
                check.fail((*path, "api_base"), f"must not have a #fragment: {shown}")
        # It becomes a header line as is: no spaces, control characters or non-ASCII.
        api_key = check.header_secret(check.optional(p, "api_key", ""), (*path, "api_key")) or ""
        proxy = _provider_proxy(check, p.get("proxy"), (*path, "proxy"))
        ids = {}
        for key in ("organization", "project"):
            value = p.get(key)
            if value is not None:
                value = check.string(value, (*path, key))
                if not HEADER_SAFE.fullmatch(value):
                    check.fail((*path, key), "must be printable ASCII without spaces")
            ids[key] = value
        weight = check.positive_int(check.optional(p, "weight", 1), (*path, "weight"))
        mapping = _model_mapping(check, p.get("model_mapping"), (*path, "model_mapping"))
        verify = p.get("verify_ssl")
        inject = p.get("inject_stream_usage")
        out.append(
            Provider(
                name=name,
                api_base=api_base,
                api_key=api_key,
                weight=weight,
                model_mapping=mapping,
                verify_ssl=None if verify is None else check.boolean(verify, (*path, "verify_ssl")),
                timeouts=parse_timeouts(check, p, path, Timeouts()),
                health_check=parse_health_check(
                    check, p.get("health_check"), (*path, "health_check")
                ),
                inject_stream_usage=None
                if inject is None
                else check.boolean(inject, (*path, "inject_stream_usage")),
                organization=ids["organization"],
                pricing=parse_pricing(check, p.get("pricing"), (*path, "pricing")),
                project=ids["project"],
                proxy=proxy,
            )
        )
    return tuple(out)


HEADER_SAFE: Final = re.compile(r"[!-~]+")  # printable ASCII, no spaces: a header value


def _model_mapping(check: Checker, raw: Any, path: Path) -> tuple[ModelRule, ...]:
    if raw is None:
        return ()
    mapping = check.mapping(raw, path, None)
    if mapping is None:
        return ()
    rules: list[ModelRule] = []
    for key, target in mapping.items():
        if not isinstance(key, str) or not key:
            check.fail(path, f"model names must be non-empty strings, got {key!r}")
            continue
        if target is not None and (not isinstance(target, str) or not target.strip()):
            check.fail((*path, key), f"must be an upstream model name (a string), got {target!r}")
            continue
        pattern = check_pattern(check, key, (*path, key))
        rules.append(ModelRule(key=key, target=target or None, pattern=pattern))
    return tuple(rules)


def check_pattern(check: Checker, text: str, path: Path) -> re.Pattern[str] | None:
    try:
        return compile_pattern(text)
    except re.error as exc:
        check.fail(path, f"invalid regular expression {text!r}: {exc}")
        return None


def redact_url(url: str) -> str:
    """`url` with any `user:password@` replaced by `***@`: safe to print and log.

    Conservative on purpose: everything up to the last `@` after the scheme goes, so a
    malformed URL (an unencoded `/` or `@` in the password) never leaks part of it either.
    """
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return url
    return f"{scheme}://***@{rest.rpartition('@')[2]}"


def _has_userinfo(url: str) -> bool:
    try:
        parsed = URL(url)
    except ValueError:
        return False
    return parsed.user is not None or parsed.password is not None


def _provider_proxy(check: Checker, raw: Any, path: Path) -> str | Literal[False] | None:
    """`proxy:` of a provider: an http:// URL (user:password@ allowed, for the proxy), or
    false/"direct" for none at all."""
    if raw is None:
        return None
    if raw is False or raw == "direct":
        return False
    value = check.string(raw, path)
    try:
        parsed = URL(value)
    except ValueError:
        parsed = URL()
    if parsed.scheme != "http" or not parsed.host:
        check.fail(path, f"must be an http:// proxy URL or false, got {redact_url(value)!r}")
        return None
    return value


def _has_host(url: str) -> bool:
    try:
        return bool(URL(url).host)
    except ValueError:
        return False
