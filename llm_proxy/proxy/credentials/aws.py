"""AWS credentials for Bedrock: static keys from the config, a profile of the shared files, or
the environment, resolved once when the config is loaded (a file read, no network).

The order, first found wins:
1. the provider's `access_key_id` and `secret_access_key` (both or neither; `session_token`
   with them for temporary credentials);
2. the provider's `profile`: `[NAME]` in the credentials file (AWS_SHARED_CREDENTIALS_FILE or
   ~/.aws/credentials), then `[profile NAME]` (`[default]` for default) in the config file
   (AWS_CONFIG_FILE or ~/.aws/config); it must exist;
3. AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and AWS_SESSION_TOKEN;
4. the profile AWS_PROFILE names, else `default`, in the same files.

Only static keys are supported: a profile that assumes a role, uses SSO, a web identity or a
`credential_process` (without keys of its own) is refused with an error saying so, rather than
silently signing with other keys than the AWS CLI would use. Errors name the field or the
files looked in, never a secret.
"""

from __future__ import annotations

import configparser
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

# Settings that make the AWS CLI get credentials some other way than the profile's keys (it
# prefers them to the keys, except `credential_process`, which it uses only without keys).
_UNSUPPORTED: Final = {
    "role_arn": "assume-role (role_arn)",
    "web_identity_token_file": "web identity (web_identity_token_file)",
    "sso_session": "IAM Identity Center (sso_session)",
    "sso_start_url": "IAM Identity Center (sso_start_url)",
    "sso_account_id": "IAM Identity Center (sso_account_id)",
}


class AwsCredentialsError(Exception):
    """The credentials cannot be resolved; `field` names what is missing or wrong."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


@dataclass(frozen=True, slots=True)
class AwsCredentials:
    access_key_id: str
    secret_access_key: str = field(repr=False)
    session_token: str | None = field(default=None, repr=False)


def resolve_aws(
    *,
    access_key_id: str | None,
    secret_access_key: str | None,
    session_token: str | None,
    profile: str | None,
    env: Mapping[str, str],
) -> AwsCredentials:
    """The credentials to sign with, in the module docstring's order."""
    static = _pair(
        access_key_id, secret_access_key, session_token, "access_key_id", "secret_access_key"
    )
    if static is not None:
        return static
    files = _files(env)
    if profile:
        found = _profile(profile, files)
        if found is None:
            raise AwsCredentialsError("profile", f"no profile {profile!r} in {_names(files)}")
        return found
    from_env = _pair(
        env.get("AWS_ACCESS_KEY_ID"),
        env.get("AWS_SECRET_ACCESS_KEY"),
        env.get("AWS_SESSION_TOKEN"),
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
    )
    if from_env is not None:
        return from_env
    name = env.get("AWS_PROFILE") or "default"
    found = _profile(name, files)
    if found is not None:
        return found
    if env.get("AWS_PROFILE"):
        raise AwsCredentialsError("AWS_PROFILE", f"no profile {name!r} in {_names(files)}")
    raise AwsCredentialsError(
        "access_key_id",
        "no AWS credentials found: none in the provider's config (access_key_id, "
        "secret_access_key or profile), no AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY in the "
        f"environment, no profile 'default' in {_names(files)}",
    )


def _pair(
    key_id: str | None, secret: str | None, token: str | None, id_name: str, secret_name: str
) -> AwsCredentials | None:
    if key_id and secret:
        return AwsCredentials(key_id, secret, token or None)
    if key_id:
        raise AwsCredentialsError(secret_name, f"is required with {id_name}")
    if secret:
        raise AwsCredentialsError(id_name, f"is required with {secret_name}")
    return None


def _files(env: Mapping[str, str]) -> tuple[Path, Path]:
    """The credentials file and the config file, as the AWS CLI finds them."""
    home = Path(env["HOME"]) if env.get("HOME") else Path.home()

    def path(variable: str, default: str) -> Path:
        value = env.get(variable)
        if not value:
            return home / ".aws" / default
        if value == "~" or value.startswith("~/"):
            return home / value[2:]
        return Path(value)

    return path("AWS_SHARED_CREDENTIALS_FILE", "credentials"), path("AWS_CONFIG_FILE", "config")


def _names(files: tuple[Path, Path]) -> str:
    return f"{files[0]} or {files[1]}"


def _read(path: Path, section: str) -> dict[str, str] | None:
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    try:
        parser.read_string(path.read_text(encoding="utf-8"), source=str(path))
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError, configparser.Error) as exc:
        # The parser's messages quote lines; only the file and the error's kind are shown.
        raise AwsCredentialsError("profile", f"cannot read {path}: {type(exc).__name__}") from None
    if not parser.has_section(section):
        return None
    return {key.lower(): value.strip() for key, value in parser.items(section)}


def _profile(name: str, files: tuple[Path, Path]) -> AwsCredentials | None:
    """The profile's keys, the credentials file's settings before the config file's."""
    credentials = _read(files[0], name)
    config = _read(files[1], name if name == "default" else f"profile {name}")
    if credentials is None and config is None:
        return None
    settings = {**(config or {}), **(credentials or {})}
    where = f"profile {name!r} ({_names(files)})"
    for key, kind in _UNSUPPORTED.items():
        if settings.get(key):
            raise AwsCredentialsError(
                "profile",
                f"{where} uses {kind}, which llm-proxy does not support: give it "
                "aws_access_key_id and aws_secret_access_key, or set them in the provider",
            )
    token = settings.get("aws_session_token") or settings.get("aws_security_token")
    key_id, secret = settings.get("aws_access_key_id"), settings.get("aws_secret_access_key")
    if not key_id and not secret and settings.get("credential_process"):
        raise AwsCredentialsError(
            "profile", f"{where} uses credential_process, which llm-proxy does not support"
        )
    if not key_id or not secret:
        missing = "aws_secret_access_key" if key_id else "aws_access_key_id"
        raise AwsCredentialsError("profile", f"{where} has no {missing}")
    return AwsCredentials(key_id, secret, token or None)


def resolve_aws_region(*, profile: str | None, env: Mapping[str, str]) -> str | None:
    """A default for a Bedrock provider without `region`, in the credentials' order: the
    provider's profile's `region`, AWS_REGION, AWS_DEFAULT_REGION, the AWS_PROFILE (else
    default) profile's `region`; None when none is set."""
    files = _files(env)
    if profile:
        return _region(profile, files)
    from_env = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION")
    if from_env:
        return from_env
    return _region(env.get("AWS_PROFILE") or "default", files)


def _region(name: str, files: tuple[Path, Path]) -> str | None:
    # The AWS CLI reads a profile's region from the config file only.
    config = _read(files[1], name if name == "default" else f"profile {name}")
    return (config or {}).get("region") or None
