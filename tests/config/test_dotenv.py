"""`.env` files (`config/dotenv.py`): the original's python-dotenv syntax, a bad line an error
naming file and line (never its value), the process environment winning, and which of the two
files wins when both name a variable."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from llm_proxy.config.dotenv import DotenvError, load_into_environment, parse_dotenv, read_dotenv
from llm_proxy.config.issues import ConfigError
from llm_proxy.config.model import Config
from llm_proxy.config.original_env import ignored_variables, ignored_variables_line
from llm_proxy.config.yaml_file import apply_env_overrides, load_config_file

SECRET = "sk-very-secret-value"


def test_the_syntax_python_dotenv_reads() -> None:
    text = (
        "# a comment\n"
        "\n"
        "export DB_URL=postgresql://u:p@db/llm\n"
        "ADMIN_KEY = 'single $ {quoted} ${DB_URL}'\n"
        'LANGFUSE_HOST="https://lf.example # not a comment"  # a comment\n'
        'MULTI="a\\nb\\t\\"c\\""\n'
        "PORT=18000 # a comment\n"
        "EMPTY=\n"
        "REF=${PORT}/${UNSET:-fallback}/${UNSET}\n"
        "HASH=a#b\n"
    )
    assert parse_dotenv(text) == {
        "DB_URL": "postgresql://u:p@db/llm",
        "ADMIN_KEY": "single $ {quoted} ${DB_URL}",
        "LANGFUSE_HOST": "https://lf.example # not a comment",
        "MULTI": 'a\nb\t"c"',
        "PORT": "18000",
        "EMPTY": "",
        "REF": "18000/fallback/",
        "HASH": "a#b",
    }


def test_references_resolve_against_the_environment_first() -> None:
    assert parse_dotenv("A=dotenv\nB=${A}\n", environ={"A": "process"}) == {
        "A": "dotenv",
        "B": "process",
    }
    assert parse_dotenv("B=${A:-default}\n", environ={"A": ""}) == {"B": ""}


@pytest.mark.parametrize(
    ("text", "line", "problem"),
    [
        (f"A=1\n{SECRET}\n", 2, "no `=`"),
        (f"A=1\n\n# c\nexport {SECRET}\n", 4, "no `=`"),
        (f"1BAD={SECRET}\n", 1, "NAME made of"),
        (f"MY KEY={SECRET}\n", 1, "NAME made of"),
        (f"A='{SECRET}\n", 1, "is not closed"),
        (f'A="{SECRET}\n', 1, "is not closed"),
        (f'A="{SECRET}" trailing\n', 1, "after the closing"),
    ],
)
def test_a_bad_line_names_file_and_line_never_the_value(text: str, line: int, problem: str) -> None:
    with pytest.raises(DotenvError) as exc:
        parse_dotenv(text, "/srv/proxy/.env")
    message = str(exc.value)
    assert message.startswith(f"/srv/proxy/.env line {line}: ")
    assert problem in message
    assert SECRET not in message


def test_a_file_that_is_not_utf8_names_its_line(tmp_path: Path) -> None:
    (tmp_path / ".env").write_bytes(b"A=1\nB=\xff\xfe\n")
    with pytest.raises(DotenvError, match=r"\.env line 2: not UTF-8"):
        read_dotenv(tmp_path)


@given(
    st.dictionaries(
        st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,10}", fullmatch=True),
        st.text(
            st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="'"), max_size=20
        ),
        max_size=5,
    )
)
def test_single_quoted_values_read_back_exactly(values: dict[str, str]) -> None:
    text = "".join(f"{name}='{value}'\n" for name, value in values.items())
    assert parse_dotenv(text) == values


def test_the_process_environment_wins(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("DB_URL=postgresql://from-dotenv\nLOG_FORMAT=json\n")
    environ = {"DB_URL": "postgresql://from-process"}
    added = load_into_environment(tmp_path, environ)
    assert added == ["LOG_FORMAT"]
    assert environ == {"DB_URL": "postgresql://from-process", "LOG_FORMAT": "json"}


def test_no_file_changes_nothing(tmp_path: Path) -> None:
    environ = {"A": "1"}
    assert load_into_environment(tmp_path, environ) == []
    assert environ == {"A": "1"}


VALID = """
providers:
  - name: one
    api_base: https://one.example/v1
    api_key: ${KEY_ONE}
    model_mapping: {gpt-4: gpt-4}
master_keys:
  - {name: team, key: sk-team-key-0123}
"""


def test_the_working_directory_env_beats_the_one_beside_the_config(tmp_path: Path) -> None:
    """The working directory's `.env` is in the environment when the file is read; the
    `.env` beside the file only fills what is still unset."""
    workdir, confdir = tmp_path / "work", tmp_path / "conf"
    workdir.mkdir()
    confdir.mkdir()
    (workdir / ".env").write_text("KEY_ONE=from-workdir\nPORT=18001\n")
    (confdir / ".env").write_text("KEY_ONE=from-beside\nPORT=18002\nHOST=10.0.0.2\n")
    (confdir / "config.yaml").write_text(VALID)
    environ: dict[str, str] = {}
    load_into_environment(workdir, environ)
    config = load_config_file(confdir / "config.yaml", environ)
    assert config.providers[0].api_key == "from-workdir"
    assert (config.port, config.host) == (18001, "10.0.0.2")


def test_a_bad_line_beside_the_config_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text(f"KEY_ONE=x\n{SECRET}\n")
    (tmp_path / "config.yaml").write_text(VALID)
    with pytest.raises(ConfigError) as exc:
        load_config_file(tmp_path / "config.yaml", {})
    assert (
        str(exc.value) == f"{tmp_path / '.env'} line 2: expected NAME=value (no `=` on this line)"
    )
    assert SECRET not in " ".join(str(i) for i in exc.value.issues)


def test_the_original_timeout_variables_are_read() -> None:
    config = apply_env_overrides(
        Config(require_auth=False), {"REQUEST_TIMEOUT_SECS": "300", "TTFT_TIMEOUT_SECS": "30"}
    )
    assert (config.timeouts.request_timeout_secs, config.timeouts.ttft_timeout_secs) == (300, 30)
    assert config.timeouts.connect_timeout_secs == Config().timeouts.connect_timeout_secs
    for bad in ("0", "-1", "soon", "inf", "nan"):
        with pytest.raises(ConfigError) as exc:
            apply_env_overrides(Config(require_auth=False), {"REQUEST_TIMEOUT_SECS": bad})
        assert str(exc.value) == "REQUEST_TIMEOUT_SECS (env): must be a positive number of seconds"


def test_variables_only_the_original_read_are_named_never_their_values() -> None:
    environ = {
        "MAX_TOKENS_LIMIT": "4096",
        "ADAPTIVE_ROUTING_ENABLED": "true",
        "ADAPTIVE_429_THRESHOLD": "3",
        "JSONL_LOG_PATH": "/var/log/secret-path.jsonl",
        "DB_URL": "postgresql://db/x",
        "HOME": "/root",
    }
    assert list(ignored_variables(environ)) == [
        "ADAPTIVE_429_THRESHOLD",
        "ADAPTIVE_ROUTING_ENABLED",
        "JSONL_LOG_PATH",
        "MAX_TOKENS_LIMIT",
    ]
    line = ignored_variables_line(environ)
    assert line is not None and "\n" not in line
    assert "ADAPTIVE_429_THRESHOLD, ADAPTIVE_ROUTING_ENABLED (use circuit_breaker" in line
    assert "JSONL_LOG_PATH (use request_log.jsonl_path)" in line
    assert "secret-path" not in line and "DB_URL" not in line
    assert ignored_variables_line({"DB_URL": "x"}) is None
