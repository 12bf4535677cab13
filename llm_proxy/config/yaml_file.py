"""YAML mode: read a config file, interpolate `${VAR}`, apply environment overrides.

Precedence for `PORT`, `METRICS_PORT`, `HOST`, `VERIFY_SSL`, `PROVIDER_SUFFIX`, `REQUIRE_AUTH`,
`ADMIN_KEY`, `ADMIN_KEYS`, `REQUEST_TIMEOUT_SECS`, `TTFT_TIMEOUT_SECS` and `CONFIG_PATH`:
process environment > `.env` files > YAML. The working directory's `.env` is loaded into the
process environment when a command starts (`config/dotenv.py`); the `.env` beside the config
file is read with the file, below it.

Every problem of a file is reported at once: unset variables, invalid values and invalid
environment overrides, each with its location.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping
from pathlib import Path as FsPath
from typing import Any, Final

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError

from llm_proxy.config.checker import MAX_NUMBER, Interpolated, header_safe, parse_bool
from llm_proxy.config.dotenv import current_environment, read_dotenv
from llm_proxy.config.issues import ConfigError, Issue, Path
from llm_proxy.config.master_keys import short_key_problem
from llm_proxy.config.model import Config
from llm_proxy.config.routing import routing_issues
from llm_proxy.config.validate import auth_issues, parse_config

DEFAULT_CONFIG_PATH: Final = "config.yaml"
_VAR_RE: Final = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-(.*?))?\}")


def resolve_config_path(cli_value: str | None, environ: Mapping[str, str]) -> FsPath:
    """--config > $CONFIG_PATH > config.yaml. (The command line has loaded the working
    directory's `.env` into the environment, so its CONFIG_PATH counts as $CONFIG_PATH.)"""
    if cli_value:
        return FsPath(cli_value)
    return FsPath(environ.get("CONFIG_PATH") or DEFAULT_CONFIG_PATH)


def load_config_file(path: FsPath, environ: Mapping[str, str] | None = None) -> Config:
    """Read, interpolate, validate. Raises ConfigError (with lines) or OSError.

    Variables come from `environ` (default: the process environment, with the working
    directory's `.env` as it is now: loaded at startup, read again here so that a reload sees
    an edit to it), then from the `.env` beside the file: when both `.env` files name a
    variable, the working directory's wins."""
    text = path.read_text(encoding="utf-8")
    if environ is None:
        environ = current_environment()
    beside = read_dotenv(path.parent, environ)  # DotenvError is a ConfigError
    return load_config_text(text, {**beside, **environ})


def load_config_text(text: str, env: Mapping[str, str]) -> Config:
    yaml = YAML(typ="rt")
    try:
        data = yaml.load(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}" if mark is not None else None
        raise ConfigError([Issue((), f"YAML syntax error: {exc.problem}", where)]) from None
    locate = _locator(data)
    issues: list[Issue] = []
    data = _interpolate(data, (), env, issues, locate)
    # An unset variable reads as "": its own value errors would only repeat that issue.
    unset = {issue.path for issue in issues}
    config = None
    try:
        config = parse_config(data, locate)
    except ConfigError as exc:
        issues += [i for i in exc.issues if not any(_within(i.path, u) for u in unset)]
    changes, env_issues = env_overrides(env)
    issues += env_issues
    if config is not None and not issues:
        config = with_overrides(config, changes)
        where = "env" if "require_auth" in changes else locate(("require_auth",))
        issues += auth_issues(config, where)
        issues += routing_issues(config, locate)
    if issues or config is None:
        raise ConfigError(issues)
    return config


def _within(path: Path, prefix: Path) -> bool:
    return path[: len(prefix)] == prefix


def apply_env_overrides(config: Config, env: Mapping[str, str]) -> Config:
    """`config` with the environment's overrides; ConfigError listing every bad one."""
    changes, issues = env_overrides(env)
    if issues:
        raise ConfigError(issues)
    config = with_overrides(config, changes)
    problems = auth_issues(config, "env" if "require_auth" in changes else None)
    if problems:
        raise ConfigError(problems)
    return config


def with_overrides(config: Config, changes: Mapping[str, Any]) -> Config:
    """`config` with `env_overrides`' changes (`timeouts`: the fields of the global timeouts
    that change)."""
    if not changes:
        return config
    fields = dict(changes)
    timeouts = fields.pop("timeouts", None)
    if timeouts:
        fields["timeouts"] = dataclasses.replace(config.timeouts, **timeouts)
    return dataclasses.replace(config, **fields)


# The original llm-proxy's timeout variables, read the same way here: the global timeouts.
_TIMEOUT_VARIABLES: Final = {
    "REQUEST_TIMEOUT_SECS": "request_timeout_secs",
    "TTFT_TIMEOUT_SECS": "ttft_timeout_secs",
}


def env_overrides(env: Mapping[str, str]) -> tuple[dict[str, Any], list[Issue]]:
    """Config field changes from the environment, and the problems found in it."""
    issues: list[Issue] = []
    changes: dict[str, Any] = {}
    timeouts: dict[str, float] = {}
    for var, field in _TIMEOUT_VARIABLES.items():
        if env.get(var):
            seconds = _seconds(env[var])
            if seconds is None:
                issues.append(Issue((var,), "must be a positive number of seconds", "env"))
            else:
                timeouts[field] = seconds
    if timeouts:
        changes["timeouts"] = timeouts
    if env.get("HOST"):
        changes["host"] = env["HOST"]
    _env_port(env, "PORT", "port", changes, issues)
    _env_port(env, "METRICS_PORT", "metrics_port", changes, issues)
    _env_flag(env, "VERIFY_SSL", "verify_ssl", changes, issues)
    if "PROVIDER_SUFFIX" in env:
        changes["provider_suffix"] = env["PROVIDER_SUFFIX"].strip() or None
    _env_flag(env, "REQUIRE_AUTH", "require_auth", changes, issues)
    if env.get("ADMIN_KEY"):
        secret = env["ADMIN_KEY"]
        if not header_safe(secret):  # never echo it
            issues.append(Issue(("ADMIN_KEY",), "must be printable ASCII without spaces", "env"))
        elif (problem := short_key_problem(secret)) is not None:
            issues.append(Issue(("ADMIN_KEY",), problem, "env"))
        else:
            changes["admin_key"] = secret
    if env.get("ADMIN_KEYS"):
        changes["admin_keys"] = _env_admin_keys(env["ADMIN_KEYS"], issues)
    return changes, issues


def _seconds(text: str) -> float | None:
    try:
        seconds = float(text.strip())
    except ValueError:
        return None
    return seconds if math.isfinite(seconds) and 0 < seconds <= MAX_NUMBER else None


def _env_port(
    env: Mapping[str, str], var: str, field: str, changes: dict[str, Any], issues: list[Issue]
) -> None:
    if not env.get(var):
        return
    port = env[var].strip()
    if port.isdigit() and 0 < int(port) <= 65535:
        changes[field] = int(port)
    else:
        issues.append(Issue((var,), f"must be a port number 1-65535, got {port!r}", "env"))


def _env_flag(
    env: Mapping[str, str], var: str, field: str, changes: dict[str, Any], issues: list[Issue]
) -> None:
    if not env.get(var):
        return
    flag = parse_bool(env[var])
    if flag is None:
        issues.append(Issue((var,), "must be true or false", "env"))
    else:
        changes[field] = flag


def _env_admin_keys(raw: str, issues: list[Issue]) -> tuple[tuple[str, str], ...]:
    """`ADMIN_KEYS=name:key,name:key`: the well-formed pairs (each bad one is an issue)."""
    named = []
    for i, item in enumerate(raw.split(",")):
        name, sep, secret = item.strip().partition(":")
        if not sep or not name.strip() or not secret or not header_safe(secret):
            # never echo it
            issues.append(
                Issue(
                    ("ADMIN_KEYS", i),
                    "must be name:key pairs, comma-separated (keys printable ASCII without spaces)",
                    "env",
                )
            )
        elif (problem := short_key_problem(secret)) is not None:
            issues.append(Issue(("ADMIN_KEYS", i), problem, "env"))
        else:
            named.append((name.strip(), secret))
    return tuple(named)


def _interpolate(
    node: Any, path: Path, env: Mapping[str, str], issues: list[Issue], locate: Any
) -> Any:
    if isinstance(node, CommentedMap):
        for key in list(node):
            node[key] = _interpolate(node[key], (*path, key), env, issues, locate)
        return node
    if isinstance(node, CommentedSeq):
        for i, item in enumerate(node):
            node[i] = _interpolate(item, (*path, i), env, issues, locate)
        return node
    if not isinstance(node, str) or "$" not in node:
        return node

    def substitute(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name, default = match.group(1), match.group(2)
        value = env.get(name)
        if value is None or (value == "" and default is not None):
            if default is None:
                issues.append(Issue(path, f"environment variable {name} is not set", locate(path)))
                return ""
            return default
        return value

    return Interpolated(_VAR_RE.sub(substitute, str(node)))


def _locator(root: Any) -> Any:
    """Map a key path to `line N` using ruamel's recorded positions: the deepest node of the
    path that exists in the document."""

    def locate(path: Path) -> str | None:
        node, line = root, None
        for part in path:
            try:
                if isinstance(node, CommentedMap) and part in node:
                    line = node.lc.key(part)[0]
                    node = node[part]
                elif isinstance(node, CommentedSeq) and isinstance(part, int) and part < len(node):
                    line = node.lc.item(part)[0]
                    node = node[part]
                else:
                    break
            except (KeyError, TypeError, AttributeError):
                break
        return None if line is None else f"line {line + 1}"

    return locate
