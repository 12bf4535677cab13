"""The cloud provider types as configured: `gemini` (Google AI Studio), `vertex` (Vertex AI)
and `bedrock` (Amazon Bedrock). Their defaults (api_base, auth, location), their own settings
(config/clouds.py), the Google credentials JSON check, and validation errors that name the
field and never quote a secret, in YAML and as plain data; export and `provider_data`."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path as FsPath
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llm_proxy.cli import main
from llm_proxy.config.clouds import (
    CredentialsError,
    google_credentials,
    provider_google_credentials,
    read_google_credentials,
)
from llm_proxy.config.export import export_yaml, provider_data, secret_variables
from llm_proxy.config.issues import ConfigError
from llm_proxy.config.model import (
    GEMINI_API_BASE,
    GOOGLE_TOKEN_URI,
    Provider,
    bedrock_api_base,
    default_auth,
    vertex_api_base,
)
from llm_proxy.config.yaml_file import load_config_text
from tests.helpers import make_config, provider
from tests.helpers.cloud_config import (
    AUTHORIZED_USER,
    AWS_KEY_ID,
    AWS_SECRET,
    AWS_TOKEN,
    CLIENT_SECRET,
    GEMINI_KEY,
    PRIVATE_KEY,
    REFRESH_TOKEN,
    SERVICE_ACCOUNT,
    bedrock,
    gemini,
    leaked,
    vertex,
)


def one(**fields: Any) -> Provider:
    (p,) = make_config(
        {"name": "c", **{k: v for k, v in fields.items() if v is not None}}
    ).providers
    return p


def problems(*entries: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as exc:
        make_config(*entries)
    text = str(exc.value)
    assert leaked(text) == []
    return text


@pytest.fixture
def sa_file(tmp_path: FsPath) -> str:
    path = tmp_path / "sa.json"
    path.write_text(json.dumps(SERVICE_ACCOUNT))
    return str(path)


def test_each_type_from_yaml(sa_file: str) -> None:
    text = f"""
require_auth: false
providers:
  - name: gemini
    provider_type: gemini
    api_key: ${{GEMINI_API_KEY}}
    model_mapping: {{gemini-flash: gemini-2.5-flash}}
  - name: vertex
    provider_type: vertex
    project: my-project-123
    location: us-east5
    credentials_file: {sa_file}
    model_mapping: {{claude-sonnet: claude-sonnet-4@20250514, gemini-pro: gemini-2.5-pro}}
  - name: vertex-json
    provider_type: vertex
    credentials_json: ${{GOOGLE_CREDENTIALS}}
  - name: bedrock
    provider_type: bedrock
    region: eu-central-1
    aws_access_key_id: ${{AWS_ACCESS_KEY_ID}}
    aws_secret_access_key: ${{AWS_SECRET_ACCESS_KEY}}
    aws_session_token: ${{AWS_SESSION_TOKEN}}
    model_mapping: {{claude: us.anthropic.claude-3-7-sonnet-20250219-v1:0}}
  - name: bedrock-profile
    provider_type: bedrock
    region: us-west-2
    aws_profile: prod
"""
    env = {
        "GEMINI_API_KEY": GEMINI_KEY,
        "GOOGLE_CREDENTIALS": json.dumps(SERVICE_ACCOUNT),
        "AWS_ACCESS_KEY_ID": AWS_KEY_ID,
        "AWS_SECRET_ACCESS_KEY": AWS_SECRET,
        "AWS_SESSION_TOKEN": AWS_TOKEN,
    }
    config = load_config_text(text, env)
    g, v, vj, b, bp = config.providers
    assert (g.provider_type, g.api_base, g.auth, g.api_key) == (
        "gemini",
        GEMINI_API_BASE,
        "x-goog-api-key",
        GEMINI_KEY,
    )
    assert g.model_mapping[0].target == "gemini-2.5-flash"
    assert (v.api_base, v.location, v.project, v.auth, v.api_key) == (
        "https://us-east5-aiplatform.googleapis.com",
        "us-east5",
        "my-project-123",
        "none",
        "",
    )
    assert (v.credentials_file, v.credentials_json) == (sa_file, None)
    assert [r.target for r in v.model_mapping] == ["claude-sonnet-4@20250514", "gemini-2.5-pro"]
    # The project comes from the JSON; the location is global.
    assert (vj.api_base, vj.location, vj.project) == (
        "https://aiplatform.googleapis.com",
        "global",
        None,
    )
    assert vj.credentials_json == json.dumps(SERVICE_ACCOUNT)
    assert (b.api_base, b.region, b.auth) == (
        "https://bedrock-runtime.eu-central-1.amazonaws.com",
        "eu-central-1",
        "none",
    )
    assert (b.aws_access_key_id, b.aws_secret_access_key, b.aws_session_token) == (
        AWS_KEY_ID,
        AWS_SECRET,
        AWS_TOKEN,
    )
    assert b.model_mapping[0].target == "us.anthropic.claude-3-7-sonnet-20250219-v1:0"
    assert (bp.aws_profile, bp.aws_access_key_id, bp.api_base) == (
        "prod",
        None,
        bedrock_api_base("us-west-2"),
    )
    assert leaked(repr(config)) == []


def test_defaults_by_type() -> None:
    assert [default_auth(t) for t in ("gemini", "vertex", "bedrock")] == [
        "x-goog-api-key",
        "none",
        "none",
    ]
    assert vertex_api_base("global") == "https://aiplatform.googleapis.com"
    assert vertex_api_base("europe-west4") == "https://europe-west4-aiplatform.googleapis.com"
    assert bedrock_api_base("us-east-1") == "https://bedrock-runtime.us-east-1.amazonaws.com"
    # Types that do not use them keep None.
    (o,) = make_config(provider("o", "https://o.example/v1", {"m": None})).providers
    assert (o.location, o.region, o.credentials_json, o.aws_profile) == (None, None, None, None)
    # Application default credentials: neither file nor JSON.
    p = one(**vertex())
    assert (p.credentials_file, p.credentials_json, p.location) == (None, None, "global")
    assert provider_google_credentials(p) is None


@pytest.mark.parametrize(
    ("given", "kept"),
    [
        (None, GEMINI_API_BASE),
        ("https://generativelanguage.googleapis.com/", GEMINI_API_BASE),
        ("https://generativelanguage.googleapis.com/v1beta", GEMINI_API_BASE),
        ("https://generativelanguage.googleapis.com/v1", GEMINI_API_BASE),
        ("https://gw.example/google/v1beta?team=a", "https://gw.example/google?team=a"),
        ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
        ("https://gw.example/models-gateway", "https://gw.example/models-gateway"),
    ],
)
def test_the_gemini_api_base_is_the_root(given: str | None, kept: str) -> None:
    assert one(**gemini(api_base=given)).api_base == kept


@pytest.mark.parametrize("auth", ["bearer", "x-goog-api-key", "api-key"])
def test_gemini_keeps_the_chosen_auth(auth: str) -> None:
    assert one(**gemini(auth=auth)).auth == auth
    # auth: none needs no key (a gateway in front adds it).
    assert one(**gemini(auth="none", api_key=None)).api_key == ""


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        (
            gemini(api_key=None),
            "providers[0].api_key: is required for provider_type gemini (a Google AI Studio "
            "key, sent as x-goog-api-key)",
        ),
        (
            gemini(api_base="https://generativelanguage.googleapis.com/v1beta/models"),
            "providers[0].api_base: is the API's root URL (like "
            "https://generativelanguage.googleapis.com)",
        ),
        (
            gemini(api_base="https://generativelanguage.googleapis.com/v1beta/openai/"),
            "providers[0].api_base: is Gemini's OpenAI-compatible endpoint: use it with "
            "provider_type openai",
        ),
        (
            vertex(api_base="https://aiplatform.googleapis.com/v1/projects/p/locations/global"),
            "providers[0].api_base: is the API's root URL (like https://aiplatform",
        ),
        (gemini(api_key="has space"), "providers[0].api_key: must be printable ASCII"),
        (
            gemini(headers={"x-goog-api-key": "k"}),
            "providers[0].headers['x-goog-api-key']: carries the provider's key",
        ),
        (gemini(project="p-123456"), "providers[0].project: is for provider_type vertex"),
        (gemini(organization="org-1"), "providers[0].organization: is OpenAI's"),
        (gemini(region="us-east-1"), "providers[0].region: is only for provider_type bedrock"),
        (
            vertex(api_key=GEMINI_KEY),
            "providers[0].api_key: is not used by provider_type vertex: its calls are signed "
            "with Google credentials",
        ),
        (vertex(auth="bearer"), "providers[0].auth: is not used by provider_type vertex"),
        (
            vertex(anthropic_version="2023-06-01"),
            "providers[0].anthropic_version: is not sent to Vertex AI: its Anthropic models "
            "take anthropic_version vertex-2023-10-16 in the request body",
        ),
        (
            vertex(project=None),
            "providers[0].project: is required for provider_type vertex (the Google Cloud "
            "project id), unless the credentials JSON has a project_id",
        ),
        (vertex(project="My Project"), "providers[0].project: must be printable ASCII"),
        (vertex(project="UPPER-case"), "providers[0].project: must be a Google Cloud project"),
        (
            vertex(location="Mars"),
            "providers[0].location: must be global or a Google Cloud region such as us-east5, "
            "got 'Mars'",
        ),
        (vertex(location=5), "providers[0].location: must be a string"),
        (
            vertex(credentials_file="/nonexistent/sa.json"),
            "providers[0].credentials_file: cannot read '/nonexistent/sa.json'",
        ),
        (
            vertex(credentials_json="{not json"),
            "providers[0].credentials_json: is not valid JSON",
        ),
        (
            vertex(credentials_json="[1, 2]"),
            "providers[0].credentials_json: must be a JSON object",
        ),
        (
            vertex(credentials_json=json.dumps({**SERVICE_ACCOUNT, "type": "external_account"})),
            "providers[0].credentials_json: must have type service_account or authorized_user,"
            " not 'external_account'",
        ),
        (
            vertex(credentials_json=json.dumps({**SERVICE_ACCOUNT, "client_email": None})),
            "providers[0].credentials_json: (service_account) lacks client_email",
        ),
        (
            vertex(credentials_json=json.dumps({**SERVICE_ACCOUNT, "private_key": "MIIEvQ"})),
            "providers[0].credentials_json: (service_account) private_key is not a PEM",
        ),
        (
            vertex(credentials_json=json.dumps({**AUTHORIZED_USER, "refresh_token": ""})),
            "providers[0].credentials_json: (authorized_user) lacks refresh_token",
        ),
        (
            vertex(
                credentials_json=json.dumps({**SERVICE_ACCOUNT, "token_uri": "http://t.example"})
            ),
            "providers[0].credentials_json: (service_account) token_uri must be an https://",
        ),
        (
            vertex(credentials_json=json.dumps(SERVICE_ACCOUNT), credentials_file="/x.json"),
            "providers[0].credentials_json: give credentials_file or credentials_json, not both",
        ),
        (
            vertex(location="us-east5", api_base="https://europe-west4-aiplatform.googleapis.com"),
            "providers[0].api_base: is the endpoint of location europe-west4, but location is "
            "us-east5: change both, or leave api_base out",
        ),
        (
            vertex(api_base="https://us-east5-aiplatform.googleapis.com"),
            "providers[0].api_base: is the endpoint of location us-east5, but location is global",
        ),
        (
            vertex(region="us-east-1"),
            "providers[0].region: is only for provider_type bedrock (this one is vertex)",
        ),
        (bedrock(region=None), "providers[0].region: is required"),
        (
            bedrock(region="virginia"),
            "providers[0].region: must be an AWS region such as us-east-1, got 'virginia'",
        ),
        (bedrock(api_key="k"), "providers[0].api_key: is not used by provider_type bedrock"),
        (bedrock(auth="none"), "providers[0].auth: is not used by provider_type bedrock"),
        (
            bedrock(aws_access_key_id=AWS_KEY_ID),
            "providers[0].aws_secret_access_key: is required with the other static key",
        ),
        (
            bedrock(aws_secret_access_key=AWS_SECRET),
            "providers[0].aws_access_key_id: is required with the other static key",
        ),
        (
            bedrock(aws_session_token=AWS_TOKEN),
            "providers[0].aws_session_token: is only used with aws_access_key_id and "
            "aws_secret_access_key",
        ),
        (
            bedrock(
                aws_profile="prod", aws_access_key_id=AWS_KEY_ID, aws_secret_access_key=AWS_SECRET
            ),
            "providers[0].aws_profile: give aws_profile or static keys",
        ),
        (bedrock(aws_profile="my profile"), "providers[0].aws_profile: must be a profile name"),
        (
            bedrock(aws_access_key_id=AWS_KEY_ID, aws_secret_access_key=AWS_SECRET + " x"),
            "providers[0].aws_secret_access_key: must be printable ASCII without spaces",
        ),
        (bedrock(aws_access_key_id=7), "providers[0].aws_access_key_id: must be a string"),
        (
            bedrock(api_base="https://bedrock-runtime.us-west-2.amazonaws.com"),
            "providers[0].api_base: is the endpoint of region us-west-2, but region is us-east-1",
        ),
        (
            bedrock(headers={"X-Amz-Date": "20250101T000000Z"}),
            "providers[0].headers['X-Amz-Date']: is set by the request's AWS signature",
        ),
        (
            bedrock(location="us-east5"),
            "providers[0].location: is only for provider_type vertex (this one is bedrock)",
        ),
        (
            bedrock(credentials_json="{}"),
            "providers[0].credentials_json: is only for provider_type vertex",
        ),
        ({"name": "g", "provider_type": "gemni"}, "providers[0].provider_type: must be one of"),
    ],
)
def test_errors_name_the_field(entry: dict[str, Any], message: str) -> None:
    assert message in problems({k: v for k, v in entry.items() if v is not None})


@pytest.mark.parametrize(
    "field", ["location", "credentials_file", "credentials_json", "region", "aws_profile"]
)
def test_cloud_fields_are_refused_elsewhere(field: str) -> None:
    text = problems(provider("o", "https://o.example/v1", {"m": None}, **{field: "x"}))
    owner = "bedrock" if field in ("region", "aws_profile") else "vertex"
    assert f"providers[0].{field}: is only for provider_type {owner} (this one is openai)" in text


def test_an_error_is_located_in_the_file() -> None:
    text = "providers:\n  - name: b\n    provider_type: bedrock\n    region: Ohio\n"
    with pytest.raises(ConfigError) as exc:
        load_config_text(text, {})
    assert str(exc.value).startswith("providers[0].region (line 4): must be an AWS region")


def test_a_custom_endpoint_is_kept() -> None:
    # A private endpoint (PrivateLink, a gateway) is not checked against the region.
    assert (
        one(**bedrock(api_base="https://vpce-1.bedrock-runtime.us-east-1.vpce.amazonaws.com/"))
    ).api_base == "https://vpce-1.bedrock-runtime.us-east-1.vpce.amazonaws.com"
    assert one(**bedrock(api_base="https://bedrock-runtime-fips.us-east-1.amazonaws.com"))
    p = one(**vertex(location="us-east5", api_base="https://us-east5-aiplatform.googleapis.com/v1"))
    assert p.api_base == "https://us-east5-aiplatform.googleapis.com"  # the version dropped
    assert one(**vertex(api_base="http://127.0.0.1:9/")).api_base == "http://127.0.0.1:9"


def test_google_credentials(sa_file: str) -> None:
    sa = read_google_credentials(sa_file)
    assert (sa.kind, sa.project_id, sa.client_email, sa.private_key_id) == (
        "service_account",
        "my-project-123",
        SERVICE_ACCOUNT["client_email"],
        "abc123",
    )
    assert sa.private_key == PRIVATE_KEY and "MIIEvQ" not in repr(sa)
    user = google_credentials(json.dumps({**AUTHORIZED_USER, "quota_project_id": "q-project"}))
    assert (user.kind, user.token_uri, user.project_id) == (
        "authorized_user",
        GOOGLE_TOKEN_URI,
        "q-project",
    )
    assert REFRESH_TOKEN not in repr(user) and CLIENT_SECRET not in repr(user)
    # The project may come from the credentials alone (a user's quota project too).
    p = one(provider_type="vertex", credentials_file=sa_file)
    assert p.project is None and provider_google_credentials(p) == sa
    with pytest.raises(CredentialsError, match=r"^is not valid JSON$"):
        google_credentials('{"private_key": "' + PRIVATE_KEY.replace("\n", "\\n"))


@pytest.mark.parametrize(
    ("token_uri", "usable"),
    [
        ("https://oauth2.example/token", True),
        ("http://127.0.0.1:9/token", True),  # a local emulator or test fake
        ("http://localhost/token", True),
        ("http://[::1]:9/token", True),
        ("http://127.0.0.1:80@attacker.example/token", False),  # the host is attacker.example
        ("http://127.0.0.1.attacker.example/token", False),
        ("http://oauth2.googleapis.com/token", False),
        ("https:///token", False),
        ("ftp://127.0.0.1/token", False),
        ("https://[::1/token", False),  # not a URL
    ],
)
def test_a_token_uri_off_the_loopback_must_be_https(token_uri: str, usable: bool) -> None:
    text = json.dumps({**AUTHORIZED_USER, "token_uri": token_uri})
    if usable:
        assert google_credentials(text).token_uri == token_uri
    else:
        with pytest.raises(CredentialsError, match=r"^\(authorized_user\) token_uri must be"):
            google_credentials(text)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_an_unreadable_credentials_file(tmp_path: FsPath) -> None:
    path = tmp_path / "sa.json"
    path.write_text(json.dumps(SERVICE_ACCOUNT))
    path.chmod(0)
    text = problems(vertex(credentials_file=str(path)))
    assert f"providers[0].credentials_file: cannot read {str(path)!r}: Permission denied" in text


def test_export_hides_the_secrets(sa_file: str) -> None:
    config = make_config(
        gemini(),
        vertex(location="europe-west4", credentials_file=sa_file),
        vertex(name="vj", credentials_json=json.dumps(SERVICE_ACCOUNT), project=None),
        bedrock(
            aws_access_key_id=AWS_KEY_ID,
            aws_secret_access_key=AWS_SECRET,
            aws_session_token=AWS_TOKEN,
        ),
        bedrock(name="bp", aws_profile="prod", region="us-west-2"),
    )
    g, v, vj, b, bp = (provider_data(p) for p in config.providers)
    # The type's api_base, auth and location are defaults: left out.
    assert g == {
        "name": "g",
        "provider_type": "gemini",
        "api_key": GEMINI_KEY,
        "weight": 1,
        "model_mapping": {},
    }
    assert v == {
        "name": "v",
        "provider_type": "vertex",
        "weight": 1,
        "model_mapping": {},
        "project": "my-project-123",
        "location": "europe-west4",
        "credentials_file": sa_file,
    }
    assert vj["credentials_json"] == json.dumps(SERVICE_ACCOUNT) and "location" not in vj
    assert (b["region"], b["aws_access_key_id"], b["aws_session_token"]) == (
        "us-east-1",
        AWS_KEY_ID,
        AWS_TOKEN,
    )
    assert bp["aws_profile"] == "prod" and "api_base" not in bp
    assert secret_variables(config.providers[3]) == [
        "LLM_PROXY_AWS_ACCESS_KEY_ID_B",
        "LLM_PROXY_AWS_SECRET_ACCESS_KEY_B",
        "LLM_PROXY_AWS_SESSION_TOKEN_B",
    ]
    assert secret_variables(config.providers[2]) == ["LLM_PROXY_CREDENTIALS_JSON_VJ"]
    text = export_yaml(config, version="1")
    assert leaked(text) == []
    assert "aws_secret_access_key: ${LLM_PROXY_AWS_SECRET_ACCESS_KEY_B}" in text
    assert "credentials_json: ${LLM_PROXY_CREDENTIALS_JSON_VJ}" in text
    assert "aws_profile: prod" in text and "credentials_file: " in text
    env = {
        "LLM_PROXY_KEY_G": GEMINI_KEY,
        "LLM_PROXY_CREDENTIALS_JSON_VJ": json.dumps(SERVICE_ACCOUNT),
        "LLM_PROXY_AWS_ACCESS_KEY_ID_B": AWS_KEY_ID,
        "LLM_PROXY_AWS_SECRET_ACCESS_KEY_B": AWS_SECRET,
        "LLM_PROXY_AWS_SESSION_TOKEN_B": AWS_TOKEN,
    }
    again = load_config_text(text, env)
    assert again.providers == config.providers
    # With the secrets: read back as they were, without any variable.
    plain = load_config_text(export_yaml(config, version="1", with_secrets=True), {})
    assert plain.providers == config.providers


@settings(max_examples=60, deadline=None)
@given(
    kind=st.sampled_from(("gemini", "vertex", "bedrock")),
    place=st.sampled_from((None, "us-east5", "europe-west4", "us-east-1", "ap-southeast-2")),
    custom_base=st.booleans(),
    keys=st.booleans(),
)
def test_what_is_exported_reads_back_the_same(
    kind: str, place: str | None, custom_base: bool, keys: bool
) -> None:
    entry: dict[str, Any] = {"name": "p", "provider_type": kind}
    if kind == "gemini":
        entry["api_key"] = GEMINI_KEY
    elif kind == "vertex":
        location = place if place in ("us-east5", "europe-west4") else None
        entry |= {"project": "my-project-123", "location": location}
        if keys:
            entry["credentials_json"] = json.dumps(AUTHORIZED_USER)
    else:
        entry["region"] = place if place in ("us-east-1", "ap-southeast-2") else "us-west-2"
        if keys:
            entry |= {"aws_access_key_id": AWS_KEY_ID, "aws_secret_access_key": AWS_SECRET}
    if custom_base:
        entry["api_base"] = "https://gw.example/cloud"
    (first,) = make_config({k: v for k, v in entry.items() if v is not None}).providers
    (second,) = make_config(provider_data(first)).providers
    assert second == first
    assert first.api_base and provider_data(second) == provider_data(first)


async def test_check_config_says_what_signs_the_calls(
    sa_file: str, tmp_path: FsPath, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(
        f"""require_auth: false
providers:
  - {{name: g, provider_type: gemini, api_key: {GEMINI_KEY}, model_mapping: {{gm: null}}}}
  - {{name: v, provider_type: vertex, location: us-east5, credentials_file: {sa_file}}}
  - name: vj
    provider_type: vertex
    project: other-project
    credentials_json: '{json.dumps(AUTHORIZED_USER)}'
  - {{name: va, provider_type: vertex, project: my-project-123}}
  - name: b
    provider_type: bedrock
    region: eu-west-1
    aws_access_key_id: {AWS_KEY_ID}
    aws_secret_access_key: {AWS_SECRET}
    aws_session_token: {AWS_TOKEN}
    model_mapping: {{claude: us.anthropic.claude-3-7-sonnet-20250219-v1:0}}
  - {{name: bp, provider_type: bedrock, region: us-east-1, aws_profile: prod}}
  - {{name: be, provider_type: bedrock, region: us-east-1}}
"""
    )
    assert await asyncio.to_thread(main, ["check-config", str(path)]) == 0
    out = capsys.readouterr()
    assert leaked(out.out + out.err) == []
    lines = out.out.splitlines()

    def after(name: str) -> str:
        return lines[lines.index(next(x for x in lines if x.startswith(f"  {name}  "))) + 1]

    assert "g  weight 1 (14.3%)  https://generativelanguage.googleapis.com" in out.out
    assert after("g").strip() == "gemini; auth x-goog-api-key"
    assert after("v").strip() == (
        "vertex; project my-project-123; location us-east5; credentials: service_account "
        "proxy@my-project-123.iam.gserviceaccount.com (file)"
    )
    assert "v  weight 1 (14.3%)  https://us-east5-aiplatform.googleapis.com" in out.out
    assert after("vj").strip() == (
        "vertex; project other-project; location global; credentials: authorized_user "
        "764086051850-abc.apps.googleusercontent.com (credentials_json)"
    )
    assert after("va").strip().endswith("credentials: application default credentials")
    assert after("b").strip() == (
        "bedrock; region eu-west-1; credentials: static keys + session token"
    )
    assert "claude -> us.anthropic.claude-3-7-sonnet-20250219-v1:0  [exact]" in out.out
    assert after("bp").strip() == "bedrock; region us-east-1; credentials: profile prod"
    assert after("be").strip().endswith("credentials: the environment's (or the default profile)")
    # A bad one: reported, naming the field, without the key material.
    bad = json.dumps({**SERVICE_ACCOUNT, "client_email": ""})
    path.write_text(
        "require_auth: false\nproviders:\n  - name: v\n    provider_type: vertex\n"
        f"    credentials_json: '{bad}'\n  - {{name: b, provider_type: bedrock, region: x}}\n"
    )
    assert await asyncio.to_thread(main, ["check-config", str(path)]) != 0
    out = capsys.readouterr()
    assert leaked(out.out + out.err) == []
    assert "providers[0].credentials_json (line 5): (service_account) lacks client_email" in out.err
    assert "providers[1].region (line 6): must be an AWS region such as us-east-1" in out.err


def test_the_commented_examples_parse(sa_file: str) -> None:
    """example.config.yaml's commented gemini, vertex and bedrock entries, uncommented."""
    lines = (FsPath(__file__).parents[2] / "example.config.yaml").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if "# The clouds" in line) + 1
    block = []
    for line in lines[start:]:
        if not line.strip():
            break
        body = line.strip().removeprefix("#").removeprefix(" ")
        # YAML: an entry or its keys; prose and the entries' own comments are left out.
        if body.startswith("- ") or (body.startswith("  ") and not body.strip().startswith("#")):
            block.append("  " + body)
    entries = "\n".join(block).replace("/etc/llm-proxy/vertex-sa.json", sa_file)
    env = {"GEMINI_API_KEY": GEMINI_KEY, "AWS_ACCESS_KEY_ID": AWS_KEY_ID}
    env["AWS_SECRET_ACCESS_KEY"] = AWS_SECRET
    config = load_config_text(f"require_auth: false\nproviders:\n{entries}\n", env)
    g, v, b = config.providers
    assert (g.provider_type, v.provider_type, b.provider_type) == ("gemini", "vertex", "bedrock")
    assert (v.location, v.credentials_file, b.region) == ("us-east5", sa_file, "us-east-1")
    assert [r.target for r in b.model_mapping] == ["us.anthropic.claude-3-7-sonnet-20250219-v1:0"]
