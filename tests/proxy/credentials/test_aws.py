"""resolve_aws: the order (static keys, named profile, environment, AWS_PROFILE/default) on real
files under a temporary HOME, and errors that name the field without a secret."""

from __future__ import annotations

from pathlib import Path

import pytest

from llm_proxy.proxy.credentials.aws import (
    AwsCredentials,
    AwsCredentialsError,
    resolve_aws,
    resolve_aws_region,
)

SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"


def write(home: Path, name: str, text: str) -> Path:
    path = home / ".aws" / name
    path.parent.mkdir(exist_ok=True)
    path.write_text(text)
    return path


def resolve(
    env: dict[str, str],
    *,
    access_key_id: str | None = None,
    secret_access_key: str | None = None,
    session_token: str | None = None,
    profile: str | None = None,
) -> AwsCredentials:
    return resolve_aws(
        access_key_id=access_key_id,
        secret_access_key=secret_access_key,
        session_token=session_token,
        profile=profile,
        env=env,
    )


@pytest.fixture
def home(tmp_path: Path) -> Path:
    write(
        tmp_path,
        "credentials",
        "[default]\naws_access_key_id = AKIDDEFAULT\naws_secret_access_key = s-default\n\n"
        "[work]\naws_access_key_id=AKIDWORK\naws_secret_access_key=s-work\n"
        "aws_session_token = tok-work\n",
    )
    write(
        tmp_path,
        "config",
        "[default]\nregion = us-east-1\n\n"
        "[profile cfg]\naws_access_key_id = AKIDCFG\naws_secret_access_key = s-cfg\n"
        "region = eu-west-3\n\n"
        "[profile role]\nrole_arn = arn:aws:iam::123456789012:role/x\nsource_profile = default\n"
        "\n[profile sso]\nsso_session = corp\nsso_account_id = 123456789012\n"
        "\n[profile proc]\ncredential_process = /bin/creds\n"
        "\n[profile proc-with-keys]\ncredential_process = /bin/creds\n"
        "aws_access_key_id = AKIDPK\naws_secret_access_key = s-pk\n"
        "\n[profile half]\naws_access_key_id = AKIDHALF\n",
    )
    return tmp_path


def test_static_keys_win(home: Path) -> None:
    env = {"HOME": str(home), "AWS_ACCESS_KEY_ID": "AKIDENV", "AWS_SECRET_ACCESS_KEY": "e"}
    got = resolve(env, access_key_id="AKIDSTATIC", secret_access_key=SECRET, session_token="t")
    assert got == AwsCredentials("AKIDSTATIC", SECRET, "t")


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"access_key_id": "AKID"}, "secret_access_key"),
        ({"secret_access_key": SECRET}, "access_key_id"),
    ],
)
def test_static_keys_come_in_pairs(home: Path, kwargs: dict[str, str], field: str) -> None:
    with pytest.raises(AwsCredentialsError) as caught:
        resolve({"HOME": str(home)}, **kwargs)
    assert caught.value.field == field
    assert SECRET not in str(caught.value)


def test_named_profile_before_the_environment(home: Path) -> None:
    env = {"HOME": str(home), "AWS_ACCESS_KEY_ID": "AKIDENV", "AWS_SECRET_ACCESS_KEY": "e"}
    assert resolve(env, profile="work") == AwsCredentials("AKIDWORK", "s-work", "tok-work")
    assert resolve(env, profile="cfg") == AwsCredentials("AKIDCFG", "s-cfg")
    assert resolve(env, profile="proc-with-keys") == AwsCredentials("AKIDPK", "s-pk")


def test_a_missing_named_profile_says_where_it_looked(home: Path) -> None:
    with pytest.raises(AwsCredentialsError, match="no profile 'nope'") as caught:
        resolve({"HOME": str(home)}, profile="nope")
    assert str(home / ".aws" / "credentials") in str(caught.value)
    assert str(home / ".aws" / "config") in str(caught.value)


def test_environment_before_the_default_profile(home: Path) -> None:
    env = {
        "HOME": str(home),
        "AWS_ACCESS_KEY_ID": "AKIDENV",
        "AWS_SECRET_ACCESS_KEY": "s-env",
        "AWS_SESSION_TOKEN": "tok-env",
    }
    assert resolve(env) == AwsCredentials("AKIDENV", "s-env", "tok-env")
    with pytest.raises(AwsCredentialsError) as caught:
        resolve({"HOME": str(home), "AWS_ACCESS_KEY_ID": "AKIDENV"})
    assert caught.value.field == "AWS_SECRET_ACCESS_KEY"


def test_aws_profile_then_default(home: Path) -> None:
    assert resolve({"HOME": str(home)}) == AwsCredentials("AKIDDEFAULT", "s-default")
    assert resolve({"HOME": str(home), "AWS_PROFILE": "work"}).access_key_id == "AKIDWORK"
    with pytest.raises(AwsCredentialsError) as caught:
        resolve({"HOME": str(home), "AWS_PROFILE": "gone"})
    assert caught.value.field == "AWS_PROFILE"


def test_file_locations_from_the_environment(
    home: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    credentials = elsewhere / "creds.ini"
    credentials.write_text("[default]\naws_access_key_id = AKIDMOVED\naws_secret_access_key = m\n")
    config = elsewhere / "conf.ini"
    config.write_text("[profile only-here]\naws_access_key_id = AKIDC\naws_secret_access_key = c\n")
    env = {
        "HOME": str(home),
        "AWS_SHARED_CREDENTIALS_FILE": str(credentials),
        "AWS_CONFIG_FILE": str(config),
    }
    assert resolve(env).access_key_id == "AKIDMOVED"
    assert resolve(env, profile="only-here").access_key_id == "AKIDC"
    # The ~/.aws files are not read when the variables point elsewhere.
    with pytest.raises(AwsCredentialsError):
        resolve(env, profile="work")


@pytest.mark.parametrize(
    ("profile", "kind"),
    [
        ("role", "assume-role"),
        ("sso", "IAM Identity Center"),
        ("proc", "credential_process"),
    ],
)
def test_unsupported_profile_kinds_are_refused(home: Path, profile: str, kind: str) -> None:
    with pytest.raises(AwsCredentialsError, match=rf"uses {kind}.*not support"):
        resolve({"HOME": str(home)}, profile=profile)


def test_a_profile_missing_its_secret(home: Path) -> None:
    with pytest.raises(AwsCredentialsError, match=r"'half'.*no aws_secret_access_key"):
        resolve({"HOME": str(home)}, profile="half")


def test_nothing_found_says_where_it_looked(tmp_path: Path) -> None:
    with pytest.raises(AwsCredentialsError) as caught:
        resolve({"HOME": str(tmp_path)})
    message = str(caught.value)
    assert "AWS_ACCESS_KEY_ID" in message
    assert str(tmp_path / ".aws" / "credentials") in message


def test_an_unreadable_file_is_named_not_quoted(tmp_path: Path) -> None:
    write(tmp_path, "credentials", f"aws_secret_access_key = {SECRET}\n[default]\n")
    with pytest.raises(AwsCredentialsError, match="cannot read") as caught:
        resolve({"HOME": str(tmp_path)})
    assert SECRET not in str(caught.value)


def test_repr_hides_the_secret_and_token() -> None:
    text = repr(AwsCredentials("AKIDX", SECRET, "session-token-value"))
    assert "AKIDX" in text
    assert SECRET not in text
    assert "session-token-value" not in text


def test_region_order(home: Path) -> None:
    env = {"HOME": str(home), "AWS_REGION": "ap-south-1", "AWS_DEFAULT_REGION": "ca-central-1"}
    assert resolve_aws_region(profile="cfg", env=env) == "eu-west-3"
    assert resolve_aws_region(profile="work", env=env) is None  # no region in its profile
    assert resolve_aws_region(profile=None, env=env) == "ap-south-1"
    del env["AWS_REGION"]
    assert resolve_aws_region(profile=None, env=env) == "ca-central-1"
    del env["AWS_DEFAULT_REGION"]
    assert resolve_aws_region(profile=None, env=env) == "us-east-1"  # [default] in config
    assert resolve_aws_region(profile=None, env={**env, "AWS_PROFILE": "cfg"}) == "eu-west-3"
