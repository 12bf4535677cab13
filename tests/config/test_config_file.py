"""YAML mode: validation messages name the key path and line; interpolation; precedence."""

from __future__ import annotations

from pathlib import Path

import pytest

from llm_proxy.cli import main
from llm_proxy.config.dotenv import parse_dotenv
from llm_proxy.config.issues import ConfigError
from llm_proxy.config.model import HealthCheck
from llm_proxy.config.yaml_file import load_config_file, load_config_text

VALID = """\
providers:
  - name: one
    api_base: http://127.0.0.1:9/v1
    api_key: sk-1
    weight: 2
    model_mapping:
      gpt-4o: gpt-4o
  - name: two
    api_base: http://127.0.0.1:9/v1/
    api_key: sk-2
    model_mapping:
      "gemini-*": gemini-pro
      "claude-opus-4-5-.*": claude-opus
master_keys:
  - name: team-a
    key: sk-team-a
    rate_limit: {requests_per_second: 5, burst_size: 10}
    allowed_models: ["gpt-*"]
server:
  host: 127.0.0.1
  port: 18080
verify_ssl: false
request_timeout_secs: 60
"""


def errors_of(text: str, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as exc:
        load_config_text(text, env or {})
    return [str(i) for i in exc.value.issues]


def test_valid_config_loads_as_frozen_snapshot() -> None:
    config = load_config_text(VALID, {})
    assert [p.name for p in config.providers] == ["one", "two"]
    assert config.providers[0].weight == 2 and config.providers[1].weight == 1
    assert config.providers[1].api_base == "http://127.0.0.1:9/v1"  # trailing / dropped
    assert config.port == 18080 and config.host == "127.0.0.1"
    assert config.verify_ssl is False and config.request_timeout_secs == 60
    key = config.master_keys[0]
    assert key.rate_limit is not None and key.rate_limit.burst_size == 10
    assert "sk-team-a" not in repr(key) and "sk-1" not in repr(config)  # secrets stay out
    with pytest.raises(AttributeError):
        config.port = 1  # type: ignore[misc]


def test_wrong_weight_names_path_and_line() -> None:
    text = VALID.replace("    weight: 2\n", "    weight: 0\n")
    assert errors_of(text) == ["providers[0].weight (line 5): must be a positive integer, got 0"]
    text = VALID.replace("    weight: 2\n", "    weight: -3\n")
    assert errors_of(text) == ["providers[0].weight (line 5): must be a positive integer, got -3"]


def test_second_provider_weight_error_matches_issue_example() -> None:
    text = VALID.replace("    api_key: sk-2\n", "    api_key: sk-2\n    weight: two\n")
    assert errors_of(text) == [
        "providers[1].weight (line 11): must be a positive integer, got 'two'"
    ]


def test_unknown_key_wrong_type_duplicate_regex_all_reported() -> None:
    text = (
        VALID.replace("    api_key: sk-1\n", "    api_key: sk-1\n    wieght: 3\n")
        .replace("name: two", "name: one")
        .replace('"gemini-*"', '"gemini-(*"')
        .replace("port: 18080", "port: eighty")
    )
    found = errors_of(text)
    assert found[0].startswith("providers[0].wieght (line 5): unknown key (allowed: ")
    assert "providers[1].name (line 9): duplicate provider name 'one'" in found
    assert any(
        e.startswith("providers[1].model_mapping['gemini-(*'] (line 13): invalid regular expr")
        for e in found
    )
    assert "server.port (line 22): must be a positive integer, got 'eighty'" in found


def test_unset_variable_without_default() -> None:
    text = VALID.replace("api_key: sk-2", "api_key: ${MISSING_KEY}")
    assert errors_of(text) == [
        "providers[1].api_key (line 10): environment variable MISSING_KEY is not set"
    ]


def test_interpolation_defaults_and_types() -> None:
    text = (
        VALID.replace("api_key: sk-2", "api_key: ${KEY_TWO}")
        .replace("port: 18080", "port: ${LISTEN_PORT:-18099}")
        .replace("verify_ssl: false", "verify_ssl: ${VERIFY:-true}")
        .replace("weight: 2", 'weight: "${W}"')
    )
    config = load_config_text(text, {"KEY_TWO": "sk-from-env", "W": "4"})
    assert config.providers[1].api_key == "sk-from-env"
    assert config.port == 18099
    assert config.verify_ssl is True
    assert config.providers[0].weight == 4
    assert load_config_text("providers: []\nprovider_suffix: $${literal}\n", {}).provider_suffix
    assert errors_of(text, {"KEY_TWO": "x", "W": "four"}) == [
        "providers[0].weight (line 5): must be a positive integer, got 'four'"
    ]


def test_missing_required_and_bad_api_base() -> None:
    text = "providers:\n  - name: x\n    api_base: ftp://nope\n  - api_base: http://a/v1\n"
    assert errors_of(text) == [
        "providers[0].api_base (line 3): must start with http:// or https://: ftp://nope",
        "providers[1].name (line 4): is required",
    ]


def test_api_base_without_host_and_unsendable_api_key() -> None:
    text = (
        "providers:\n"
        "  - name: x\n    api_base: http:///v1\n"
        '  - name: y\n    api_base: http://a/v1\n    api_key: "sk-a\\r\\nX-Evil: 1"\n'
        '  - name: z\n    api_base: http://a/v1\n    api_key: "sk-ключ"\n'
    )
    assert errors_of(text) == [
        "providers[0].api_base (line 3): has no host: http:///v1",
        "providers[1].api_key (line 6): must be printable ASCII without spaces",
        "providers[2].api_key (line 9): must be printable ASCII without spaces",
    ]


def test_yaml_syntax_error_has_line() -> None:
    found = errors_of("providers:\n  - name: [unclosed\n")
    assert len(found) == 1 and "YAML syntax error" in found[0] and "(line " in found[0]


def test_master_key_validation_never_echoes_secret() -> None:
    text = VALID.replace(
        "server:",
        "  - name: team-b\n    key: sk-team-a\n    allowed_models: ['(bad']\nserver:",
    )
    found = errors_of(text)
    assert any("duplicate key value" in e for e in found)
    assert any(e.startswith("master_keys[1].allowed_models[0]") for e in found)
    assert all("sk-team-a" not in e for e in found)


def test_dotenv_and_env_precedence(tmp_path: Path) -> None:
    config_file = tmp_path / "config.yaml"
    config_file.write_text(VALID.replace("api_key: sk-2", "api_key: ${KEY_TWO}"))
    (tmp_path / ".env").write_text(
        "# comment\nexport KEY_TWO='from-dotenv'\nPORT=19000\n"
        "HOST=10.0.0.1\nPROVIDER_SUFFIX=Proxy\n"
    )
    config = load_config_file(config_file, environ={})
    assert config.providers[1].api_key == "from-dotenv"
    assert (config.port, config.host, config.provider_suffix) == (19000, "10.0.0.1", "Proxy")
    # The process environment beats .env, which beats YAML.
    config = load_config_file(config_file, environ={"PORT": "19500", "VERIFY_SSL": "true"})
    assert (config.port, config.host, config.verify_ssl) == (19500, "10.0.0.1", True)
    with pytest.raises(ConfigError) as exc:
        load_config_file(config_file, environ={"PORT": "http"})
    assert str(exc.value) == "PORT (env): must be a port number 1-65535, got 'http'"


def test_parse_dotenv() -> None:
    assert parse_dotenv('A=1\n  B = "two words"\n#C=3\nD=x # trailing\n') == {
        "A": "1",
        "B": "two words",
        "D": "x",
    }


def test_example_config_is_valid() -> None:
    root = Path(__file__).resolve().parents[2]
    config = load_config_file(root / "example.config.yaml", environ={})
    assert {p.name for p in config.providers} == {"primary", "secondary", "anthropic"}


def test_every_error_of_a_file_at_once() -> None:
    """An unset variable no longer hides the other errors (nor repeats itself as a value
    error), and bad environment overrides are listed with them."""
    text = (
        VALID.replace("api_key: sk-2", "api_key: ${MISSING_KEY}")
        .replace("port: 18080", "port: ${MISSING_PORT}")
        .replace("    weight: 2\n", "    weight: 0\n")
    )
    assert errors_of(text, {"VERIFY_SSL": "maybe"}) == [
        "providers[1].api_key (line 10): environment variable MISSING_KEY is not set",
        "server.port (line 21): environment variable MISSING_PORT is not set",
        "providers[0].weight (line 5): must be a positive integer, got 0",
        "VERIFY_SSL (env): must be true or false",
    ]


def test_require_auth_defaults_to_true_and_env_overrides_it() -> None:
    no_keys = VALID.split("master_keys:")[0]
    assert load_config_text(no_keys, {}).require_auth is True
    config = load_config_text(no_keys + "require_auth: false\n", {})
    assert config.require_auth is False
    assert load_config_text(no_keys, {"REQUIRE_AUTH": "false"}).require_auth is False
    assert load_config_text(no_keys + "require_auth: false\n", {"REQUIRE_AUTH": "1"}).require_auth
    assert errors_of(no_keys, {"REQUIRE_AUTH": "nope"}) == [
        "REQUIRE_AUTH (env): must be true or false"
    ]


def test_require_auth_false_beside_master_keys_is_refused() -> None:
    """Keys that would silently never be checked are a mistake, wherever the false comes from."""
    text = VALID + "require_auth: false\n"
    (found,) = errors_of(text)
    assert found.startswith(
        "require_auth (line 24): is false (authentication off), but 1 master key(s) are "
        "configured and would never be checked"
    )
    (found,) = errors_of(VALID, {"REQUIRE_AUTH": "off"})
    assert found.startswith("require_auth (env): is false")
    # The environment beats the file: true there makes the same file valid.
    assert load_config_text(text, {"REQUIRE_AUTH": "true"}).require_auth is True


@pytest.mark.parametrize(
    ("snippet", "expected"),
    [
        ("request_timeout_secs: .inf", "request_timeout_secs (line 23): must be a finite"),
        ("request_timeout_secs: .nan", "request_timeout_secs (line 23): must be a finite"),
        ("request_timeout_secs: -.inf", "request_timeout_secs (line 23): must be a finite"),
        ("request_timeout_secs: 1e999", "request_timeout_secs (line 23): must be a finite"),
        ('request_timeout_secs: "${T}"', "request_timeout_secs (line 23): must be a finite"),
        ("request_timeout_secs: 1e12", "request_timeout_secs (line 23): must be at most 1e+09"),
        ("max_request_body_mb: .inf", "max_request_body_mb (line 23): must be a finite"),
        ("max_connections: 99999999999", "max_connections (line 23): must be at most 2147483647"),
    ],
)
def test_non_finite_and_huge_numbers_are_config_errors(snippet: str, expected: str) -> None:
    text = VALID.replace("request_timeout_secs: 60", snippet)
    found = errors_of(text, {"T": "Infinity"})
    assert len(found) == 1 and found[0].startswith(expected), found


@pytest.mark.parametrize(("rate", "shown"), [(".inf", "inf"), (".nan", "nan"), ("1e999", "inf")])
def test_non_finite_rate_is_a_config_error(rate: str, shown: str) -> None:
    text = VALID.replace("requests_per_second: 5", f"requests_per_second: {rate}")
    assert errors_of(text) == [
        "master_keys[0].rate_limit.requests_per_second (line 17): must be a finite positive "
        f"number, got {shown}"
    ]


def test_admin_key_from_file_or_env_never_shown() -> None:
    config = load_config_text(VALID + "admin_key: adm-secret-1\n", {})
    assert config.admin_key == "adm-secret-1"
    assert "adm-secret-1" not in repr(config)
    assert load_config_text(VALID, {}).admin_key is None
    assert load_config_text(VALID + 'admin_key: ""\n', {}).admin_key is None
    config = load_config_text(VALID + "admin_key: adm-secret-1\n", {"ADMIN_KEY": "adm-env-2"})
    assert config.admin_key == "adm-env-2"
    found = errors_of(VALID + 'admin_key: "adm secret\\r\\n"\n', {"ADMIN_KEY": "bad key"})
    assert found == [
        "admin_key (line 24): must be printable ASCII without spaces",
        "ADMIN_KEY (env): must be printable ASCII without spaces",
    ]
    assert all("adm secret" not in e and "bad key" not in e for e in found)


def test_master_key_names_follow_the_provider_name_rule() -> None:
    text = VALID.replace("name: team-a", 'name: "team\\ta"')
    assert errors_of(text) == ["master_keys[0].name (line 15): must be 1-128 printable characters"]
    text = VALID.replace("name: team-a", f"name: {'k' * 129}")
    assert errors_of(text) == ["master_keys[0].name (line 15): must be 1-128 printable characters"]
    # DEL and C1 controls too, as the SQL schema's [:cntrl:].
    text = VALID.replace("name: one", 'name: "one\\x7f"')
    assert errors_of(text) == ["providers[0].name (line 2): must be 1-128 printable characters"]


def test_credentials_in_api_base_are_never_echoed() -> None:
    text = VALID.replace("http://127.0.0.1:9/v1/", "ftp://user:hunter2@127.0.0.1/v1")
    assert errors_of(text) == [
        "providers[1].api_base (line 9): must start with http:// or https://: "
        "ftp://***@127.0.0.1/v1"
    ]


@pytest.mark.parametrize(
    ("snippet", "expected"),
    [
        (
            "health_check: {interval_secs: -1}",
            ["health_check.interval_secs (line 23): must be a positive number, got -1"],
        ),
        ("health_check: {model: m}", ["health_check.interval_secs (line 23): is required"]),
        (
            "health_check: {interval_secs: 30, every: 1}",
            ["health_check.every (line 23): unknown key (allowed: interval_secs, model)"],
        ),
        ("health_check: 30", ["health_check (line 23): must be a mapping, got an integer"]),
        (
            "health_check:\n  interval_secs: 0\n  model: 5",
            [
                "health_check.interval_secs (line 24): must be a positive number, got 0",
                "health_check.model (line 25): must be a string, got an integer",
            ],
        ),
    ],
)
def test_top_level_health_check_problems_are_reported(snippet: str, expected: list[str]) -> None:
    """The global health_check is checked as every other section is (it was read after the
    verdict, its problems dropped: `interval_secs: -1` loaded as checks every second)."""
    assert errors_of(VALID.replace("request_timeout_secs: 60", snippet)) == expected
    # The same message as a provider's own health_check gets.
    text = VALID.replace(
        "    weight: 2\n", "    weight: 2\n    health_check: {interval_secs: -1}\n"
    )
    assert errors_of(text) == [
        "providers[0].health_check.interval_secs (line 6): must be a positive number, got -1"
    ]


def test_top_level_health_check_loads() -> None:
    text = VALID + "health_check: {interval_secs: 30, model: m}\n"
    assert load_config_text(text, {}).health_check == HealthCheck(30.0, "m")
    assert load_config_text(VALID, {}).health_check is None


@pytest.mark.parametrize("db_url", [None, "postgresql://127.0.0.1:9/none"])
def test_check_config_refuses_a_bad_top_level_health_check(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], db_url: str | None
) -> None:
    """check-config (and so serve, which makes the same checks first) fails on it, in YAML
    mode and in database mode, where the file holds the settings (the global health_check
    among them) and the database only providers and keys."""
    text = VALID if db_url is None else "verify_ssl: false\n"  # database mode: settings only
    line = text.count("\n") + 1
    path = tmp_path / "c.yaml"
    path.write_text(text + "health_check: {interval_secs: -1}\n")
    args = ["check-config", str(path)] + ([] if db_url is None else ["--db-url", db_url])
    assert main(args) == 1
    err = capsys.readouterr().err
    assert f"health_check.interval_secs (line {line}): must be a positive number, got -1" in err
