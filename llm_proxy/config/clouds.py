"""The cloud provider types' own settings: Google AI Studio (`gemini`), Vertex AI (`vertex`)
and Amazon Bedrock (`bedrock`).

`parse_cloud` reads and checks them for `providers.parse_providers` (so YAML files, psql edits
and admin writes follow the same rules): gemini takes an api_key like the other key-based
types; vertex and bedrock sign each call with cloud credentials instead (a Google access
token, AWS SigV4), so they take no api_key and no `auth`. Every type's api_base is known:
when the config gives none, the parsed provider carries the type's default.
`google_credentials` reads a Google credentials JSON (a service account's or an authorized
user's): the check runs it on the configured file or value, the request path mints its
access tokens from what it returns. Messages name the field, never quote key material.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path as FsPath
from typing import Any, Final, Literal

from yarl import URL

from llm_proxy.config.checker import Checker, header_safe
from llm_proxy.config.issues import Path
from llm_proxy.config.model import (
    DEFAULT_VERTEX_LOCATION,
    GEMINI_API_BASE,
    GOOGLE_TOKEN_URI,
    Provider,
    bedrock_api_base,
    vertex_api_base,
)

# Each cloud setting and the one provider_type that takes it.
CLOUD_FIELDS: Final = {
    "location": "vertex",
    "credentials_file": "vertex",
    "credentials_json": "vertex",
    "region": "bedrock",
    "aws_access_key_id": "bedrock",
    "aws_secret_access_key": "bedrock",
    "aws_session_token": "bedrock",
    "aws_profile": "bedrock",
}
# The ones that are secrets: masked like api_key, exported as variables, kept out of the
# config history.
SECRET_CLOUD_FIELDS: Final = (
    "credentials_json",
    "aws_access_key_id",
    "aws_secret_access_key",
    "aws_session_token",
)
# "global", or a Google Cloud region: us-east5, europe-west4, northamerica-northeast1.
VERTEX_LOCATION: Final = re.compile(r"global|[a-z]+-[a-z]+[0-9]+")
# An AWS region: us-east-1, eu-central-2, ap-southeast-4, us-gov-west-1.
AWS_REGION: Final = re.compile(r"[a-z]{2}(?:-[a-z]+)+-[0-9]+")
# A Google Cloud project id (6-30 characters), optionally domain-scoped (example.com:my-app).
GCP_PROJECT: Final = re.compile(r"(?:[a-z0-9.-]+:)?[a-z][a-z0-9-]{4,28}[a-z0-9]")
# An AWS profile name as the shared config file spells its sections.
AWS_PROFILE: Final = re.compile(r"[A-Za-z0-9_.@+-]+")
_VERTEX_HOST: Final = re.compile(r"(?:([a-z0-9-]+)-)?aiplatform\.googleapis\.com")
_BEDROCK_HOST: Final = re.compile(r"bedrock-runtime(?:-fips)?\.([a-z0-9-]+)\.amazonaws\.com")
_SIGNED: Final = "is not used by provider_type {kind}: its calls are signed with {what}"
_CREDENTIALS: Final = {
    "vertex": "Google credentials (credentials_file, credentials_json, or application "
    "default credentials)",
    "bedrock": "AWS credentials (aws_access_key_id/aws_secret_access_key, aws_profile, or "
    "the environment's)",
}


class CredentialsError(ValueError):
    """A Google credentials JSON that cannot be used; the message names what is wrong and
    never quotes a value from it."""


@dataclass(frozen=True, slots=True)
class GoogleCredentials:
    """A Google credentials JSON as the request path needs it: a service account signs a
    JWT with its private key, an authorized user exchanges its refresh token; both at
    `token_uri` for an access token."""

    kind: Literal["service_account", "authorized_user"]
    token_uri: str
    project_id: str | None = None  # a service account's project_id, a user's quota project
    client_email: str | None = None  # service_account
    private_key_id: str | None = None  # service_account (the JWT's `kid`)
    private_key: str = field(default="", repr=False)  # service_account, PEM
    client_id: str | None = None  # authorized_user
    client_secret: str = field(default="", repr=False)  # authorized_user
    refresh_token: str = field(default="", repr=False)  # authorized_user


_REQUIRED: Final = {
    "service_account": ("client_email", "private_key"),
    "authorized_user": ("client_id", "client_secret", "refresh_token"),
}


# An http:// token endpoint on this host (an emulator, a test fake) carries no secret off it.
_LOOPBACK: Final = frozenset({"127.0.0.1", "localhost", "::1"})


def google_credentials(text: str) -> GoogleCredentials:
    """Parse a Google credentials JSON (CredentialsError if it is not one we can use)."""
    try:
        data = json.loads(text)
    except ValueError:
        raise CredentialsError("is not valid JSON") from None
    if not isinstance(data, dict):
        raise CredentialsError("must be a JSON object (a service account's key file)")
    kind = data.get("type")
    if kind not in _REQUIRED:
        named = f", not {kind!r}" if isinstance(kind, str) and len(kind) <= 40 else ""
        raise CredentialsError(f"must have type service_account or authorized_user{named}")
    missing = [k for k in _REQUIRED[kind] if not isinstance(data.get(k), str) or not data[k]]
    if missing:
        raise CredentialsError(f"({kind}) lacks {', '.join(missing)}")
    optional = ("token_uri", "project_id", "quota_project_id", "private_key_id")
    for name in optional:
        if data.get(name) is not None and not isinstance(data[name], str):
            raise CredentialsError(f"({kind}) {name} must be a string")
    if kind == "service_account" and "PRIVATE KEY-----" not in data["private_key"]:
        raise CredentialsError("(service_account) private_key is not a PEM private key")
    token_uri = data.get("token_uri") or GOOGLE_TOKEN_URI
    if not _token_endpoint(token_uri):
        raise CredentialsError(f"({kind}) token_uri must be an https:// URL")
    if kind == "service_account":
        return GoogleCredentials(
            kind,
            token_uri,
            project_id=data.get("project_id") or None,
            client_email=data["client_email"],
            private_key_id=data.get("private_key_id") or None,
            private_key=data["private_key"],
        )
    return GoogleCredentials(
        kind,
        token_uri,
        project_id=data.get("quota_project_id") or None,
        client_id=data["client_id"],
        client_secret=data["client_secret"],
        refresh_token=data["refresh_token"],
    )


def _token_endpoint(uri: str) -> bool:
    """https://, or http:// on the loopback only (a local emulator or test fake). The host is
    parsed, not matched as a prefix: http://127.0.0.1:80@example.com/ is example.com."""
    try:
        url = URL(uri)
    except ValueError:
        return False
    if not url.host:
        return False
    return url.scheme == "https" or (url.scheme == "http" and url.host in _LOOPBACK)


def read_google_credentials(path: str) -> GoogleCredentials:
    """`google_credentials` of a file (CredentialsError when it cannot be read)."""
    try:
        text = FsPath(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise CredentialsError(f"cannot read {path!r}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise CredentialsError(f"{path!r} is not UTF-8 text") from None
    return google_credentials(text)


def provider_google_credentials(p: Provider) -> GoogleCredentials | None:
    """A vertex provider's configured credentials; None for application default credentials
    (neither credentials_file nor credentials_json). Reads the file anew on each call."""
    if p.credentials_file is not None:
        return read_google_credentials(p.credentials_file)
    if p.credentials_json is not None:
        return google_credentials(p.credentials_json)
    return None


def parse_cloud(
    check: Checker, p: Mapping[str, Any], kind: str, path: Path, api_base: str, project: str | None
) -> dict[str, Any]:
    """The cloud settings of one provider entry, as `Provider` fields, `api_base` included
    (the type's default when `api_base` is ""). Settings of another type are refused."""
    for name, owner in CLOUD_FIELDS.items():
        if p.get(name) is not None and kind != owner:
            check.fail((*path, name), f"is only for provider_type {owner} (this one is {kind})")
    if kind in _CREDENTIALS:
        # (A database row's api_key column is "" when it holds none.)
        for name in ("api_key", "auth"):
            if p.get(name) not in (None, ""):
                check.fail((*path, name), _SIGNED.format(kind=kind, what=_CREDENTIALS[kind]))
    if kind in ("gemini", "vertex", "bedrock") and p.get("organization") is not None:
        check.fail(
            (*path, "organization"),
            f"is OpenAI's (sent as OpenAI-Organization): not for provider_type {kind}",
        )
    if kind in ("gemini", "bedrock") and project is not None:
        check.fail(
            (*path, "project"),
            "is for provider_type vertex (the Google Cloud project) or OpenAI's "
            f"OpenAI-Project: not for provider_type {kind}",
        )
    if kind == "gemini":
        if not p.get("api_key") and p.get("auth") != "none":
            check.fail(
                (*path, "api_key"),
                "is required for provider_type gemini (a Google AI Studio key, sent as "
                "x-goog-api-key)",
            )
        return {"api_base": _root(check, api_base, (*path, "api_base"), GEMINI_API_BASE)}
    if kind == "vertex":
        return _vertex(check, p, path, api_base, project)
    if kind == "bedrock":
        return _bedrock(check, p, path, api_base)
    return {"api_base": api_base}


def _root(check: Checker, api_base: str, path: Path, default: str, *versions: str) -> str:
    """A Google API's root URL: `default` when none is given; a trailing API version
    (/v1beta, /v1, or `versions`) is dropped, the proxy appends its own."""
    if not api_base:
        return default
    base, mark, query = api_base.partition("?")
    try:
        segments = URL(base).path.split("/")
    except ValueError:
        segments = []
    if segments[-2:] == ["v1beta", "openai"]:
        check.fail(
            path,
            "is Gemini's OpenAI-compatible endpoint: use it with provider_type openai, or give "
            f"the root URL ({default}) here",
        )
    elif "models" in segments or "projects" in segments:
        check.fail(
            path,
            f"is the API's root URL (like {default}): the proxy appends the version, "
            "project and model path itself",
        )
    for version in (*versions, "/v1beta", "/v1"):
        base = base.removesuffix(version)
    return base + mark + query


def _vertex(
    check: Checker, p: Mapping[str, Any], path: Path, api_base: str, project: str | None
) -> dict[str, Any]:
    location = DEFAULT_VERTEX_LOCATION
    if p.get("location") is not None:
        location = check.string(p["location"], (*path, "location"))
        if location and not VERTEX_LOCATION.fullmatch(location):
            check.fail(
                (*path, "location"),
                f"must be global or a Google Cloud region such as us-east5, got {location!r}",
            )
            location = DEFAULT_VERTEX_LOCATION
    credentials = _google(check, p, path)
    if project is None and (credentials is None or credentials.project_id is None):
        check.fail(
            (*path, "project"),
            "is required for provider_type vertex (the Google Cloud project id), unless "
            "the credentials JSON has a project_id",
        )
    elif project is not None and not GCP_PROJECT.fullmatch(project):
        check.fail(
            (*path, "project"),
            "must be a Google Cloud project id (6-30 lower-case letters, digits and hyphens)",
        )
    if api_base:
        default = vertex_api_base(location)
        api_base = _root(check, api_base, (*path, "api_base"), default, "/v1beta1")
        _same_place(check, api_base, _VERTEX_HOST, "global", location, "location", path)
    return {
        "api_base": api_base or vertex_api_base(location),
        "location": location,
        "credentials_file": _optional_string(check, p, "credentials_file", path),
        "credentials_json": _optional_string(check, p, "credentials_json", path),
    }


def _google(check: Checker, p: Mapping[str, Any], path: Path) -> GoogleCredentials | None:
    """The credentials a vertex entry configures, checked (None: none, or not usable)."""
    file, value = p.get("credentials_file"), p.get("credentials_json")
    if file is not None and value is not None:
        check.fail(
            (*path, "credentials_json"),
            "give credentials_file or credentials_json, not both (neither: application "
            "default credentials)",
        )
        return None
    try:
        if file is not None:
            name = check.string(file, (*path, "credentials_file"))
            return read_google_credentials(name) if name.strip() else None
        if value is not None:
            text = check.string(value, (*path, "credentials_json"))
            return google_credentials(text) if text.strip() else None
    except CredentialsError as exc:
        where = "credentials_file" if file is not None else "credentials_json"
        check.fail((*path, where), str(exc))
    return None


def _bedrock(check: Checker, p: Mapping[str, Any], path: Path, api_base: str) -> dict[str, Any]:
    check.required(p, path, "region")
    region = _optional_string(check, p, "region", path)
    if region is not None and region.strip() and not AWS_REGION.fullmatch(region):
        check.fail((*path, "region"), f"must be an AWS region such as us-east-1, got {region!r}")
        region = None
    keys = {
        name: _aws_secret(check, p, name, path)
        for name in ("aws_access_key_id", "aws_secret_access_key", "aws_session_token")
    }
    key_id, secret = keys["aws_access_key_id"], keys["aws_secret_access_key"]
    if (key_id is None) != (secret is None):
        missing = "aws_secret_access_key" if secret is None else "aws_access_key_id"
        check.fail(
            (*path, missing),
            "is required with the other static key: give aws_access_key_id and "
            "aws_secret_access_key together (or neither)",
        )
    if keys["aws_session_token"] is not None and key_id is None and secret is None:
        check.fail(
            (*path, "aws_session_token"),
            "is only used with aws_access_key_id and aws_secret_access_key",
        )
    profile = _optional_string(check, p, "aws_profile", path)
    if profile is not None and not AWS_PROFILE.fullmatch(profile):
        check.fail((*path, "aws_profile"), "must be a profile name (letters, digits, _.@+-)")
    if profile is not None and (key_id is not None or secret is not None):
        check.fail(
            (*path, "aws_profile"),
            "give aws_profile or static keys (aws_access_key_id, aws_secret_access_key), not both",
        )
    if api_base and region:
        _same_place(check, api_base, _BEDROCK_HOST, None, region, "region", path)
    return {
        "api_base": api_base or (bedrock_api_base(region) if region else ""),
        "region": region,
        "aws_profile": profile,
        **keys,
    }


def _aws_secret(check: Checker, p: Mapping[str, Any], name: str, path: Path) -> str | None:
    """A static AWS credential: it is signed and sent as is (never echoed)."""
    if p.get(name) is None:
        return None
    value = check.string(p[name], (*path, name))
    if value and not header_safe(value):
        check.fail((*path, name), "must be printable ASCII without spaces")
    return value or None


def _optional_string(check: Checker, p: Mapping[str, Any], name: str, path: Path) -> str | None:
    return None if p.get(name) is None else check.string(p[name], (*path, name))


def _same_place(
    check: Checker,
    api_base: str,
    host: re.Pattern[str],
    bare: str | None,
    place: str,
    setting: str,
    path: Path,
) -> None:
    """An api_base on the cloud's own host must be the endpoint of the configured location
    or region (a psql edit of one without the other would send calls elsewhere)."""
    try:
        match = host.fullmatch(URL(api_base).host or "")
    except ValueError:
        return
    if match is None:
        return  # a gateway or private endpoint: its own business
    implied = match[1] or bare
    if implied != place:
        check.fail(
            (*path, "api_base"),
            f"is the endpoint of {setting} {implied}, but {setting} is {place}: change "
            f"both, or leave api_base out",
        )
