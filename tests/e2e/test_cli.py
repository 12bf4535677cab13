"""The CLI as users run it: `check-config` and `serve` in a real subprocess."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest

from llm_proxy.cli import main
from llm_proxy.config.migrate import discover
from llm_proxy.testing.mock import MockOptions, create_mock_app
from tests.helpers import eventually, serve, yaml_config
from tests.helpers.processes import serve_process

ROOT = Path(__file__).resolve().parents[2]
CONFIG = """\
providers:
  - name: big
    api_base: http://127.0.0.1:9/v1
    api_key: sk-big-secret
    weight: 3
    model_mapping: {"gpt-4o": "gpt-4o", "gpt-*": null}
  - name: small
    api_base: http://127.0.0.1:9/v1
    api_key: sk-small-secret
    model_mapping: {"gpt-4o": "gpt-4o"}
master_keys:
  - name: team-a
    key: sk-team-a-secret
    rate_limit: {requests_per_second: 2, burst_size: 4}
"""


def test_check_config_summary(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(CONFIG)
    assert main(["check-config", str(path)]) == 0
    out = capsys.readouterr().out
    assert "big  weight 3 (75.0%)" in out
    assert "small  weight 1 (25.0%)" in out
    assert "models served (1): gpt-4o" in out
    assert "gpt-* -> (same name)  [pattern]" in out
    assert "master keys (1): team-a (2 rps, burst 4)" in out
    assert "secret" not in out


def test_check_config_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(CONFIG.replace("weight: 3", "weight: 0"))
    assert main(["check-config", str(path)]) == 1
    err = capsys.readouterr().err
    assert "providers[0].weight (line 5): must be a positive integer, got 0" in err
    assert main(["check-config", str(tmp_path / "missing.yaml")]) == 1
    assert "config file not found" in capsys.readouterr().err


ROUTED = """\
providers:
  - name: a
    api_base: http://127.0.0.1:9/v1
    model_mapping: {gpt-4o: null, gpt-4o-mini: null, "claude-*": null}
  - name: b
    api_base: http://127.0.0.1:9/v1
    model_mapping: {gpt-4o: null, gpt-4o-mini: null}
  - name: eu
    api_base: http://127.0.0.1:9/v1
    model_mapping: {mistral: null}
routing:
  fallbacks: {gpt-4o: [gpt-4o-mini, claude-sonnet]}
  context_window_fallbacks: {gpt-4o-mini: [gpt-4o]}
  retry: {attempts: 3, backoff_ms: 100}
  deadline_secs: 60
  strategy: {default: weighted, gpt-4o-mini: cost, claude-sonnet: latency}
  models:
    gpt-4o: {strategy: least_busy, deadline_secs: 30, context_window: 128000}
  rules:
    - name: eu
      match: {key: [eu-*], model: [gpt-*]}
      providers: [eu]
    - name: batch
      match: {tags: [batch]}
      model: gpt-4o-mini
"""


def _check_routed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], config: str = ROUTED
) -> tuple[str, list[str]]:
    """check-config on `config`: its standard output, and its warnings."""
    path = tmp_path / "routed.yaml"
    path.write_text(config)
    assert main(["check-config", str(path)]) == 0  # warnings never fail the check
    out, err = capsys.readouterr()
    return out, [line for line in err.splitlines() if line.startswith("warning: routing")]


def test_check_config_summarizes_routing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out, _ = _check_routed(tmp_path, capsys)
    section = out[out.index("routing:\n") :].splitlines()
    assert "  fallbacks: gpt-4o -> gpt-4o-mini -> claude-sonnet" in section
    assert "  context window fallbacks: gpt-4o-mini -> gpt-4o" in section
    default = "  default: strategy weighted; 3 attempts on 5xx, connect, stream_error, timeout, 429"
    assert f"{default}; backoff 100-2000 ms; deadline 60 s" in section
    # Per model, what differs from the default only.
    assert "  gpt-4o: strategy least_busy; deadline 30 s; context window 128000 tokens" in section
    assert "  gpt-4o-mini: strategy cost" in section
    assert "  rules (2, first match wins): eu, batch" in section
    # A context-window chain for a model whose window is unknown: a note, not a warning.
    (note,) = [line for line in section if line.startswith("  note:")]
    assert "gpt-4o-mini" in note and "context_window" in note
    out, warnings = _check_routed(tmp_path, capsys, CONFIG)
    assert "routing" not in out and warnings == []


def test_check_config_warns_of_cost_without_prices(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, warnings = _check_routed(tmp_path, capsys)
    (cost,) = [w for w in warnings if "strategy cost" in w]
    assert "no price to compare" in cost and cost.endswith(
        "for gpt-4o-mini: every provider looks free, cost cannot choose"
    )
    # A price anywhere (the global pricing, or one provider's own) gives cost something.
    priced = "pricing:\n  gpt-4o-mini: {input_per_mtok: 0.15, output_per_mtok: 0.6}\n" + ROUTED
    _, warnings = _check_routed(tmp_path, capsys, priced)
    assert not [w for w in warnings if "strategy cost" in w]
    own = ROUTED.replace(
        "model_mapping: {gpt-4o: null, gpt-4o-mini: null}\n",
        "model_mapping: {gpt-4o: null, gpt-4o-mini: null}\n"
        "    pricing: {gpt-4o-*: {input_per_mtok: 0.15, output_per_mtok: 0.6}}\n",
    )
    _, warnings = _check_routed(tmp_path, capsys, own)
    assert not [w for w in warnings if "strategy cost" in w]


def test_check_config_warns_of_a_choice_among_one_provider(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, warnings = _check_routed(tmp_path, capsys)
    (single,) = [w for w in warnings if "one provider" in w]
    # claude-sonnet is served by `a` alone (its pattern); gpt-4o has two: no warning.
    assert single.endswith("nothing to choose between: claude-sonnet (latency: only a)")
    # The default strategy counts for every model without its own.
    one = ROUTED.replace("default: weighted", "default: latency")
    _, warnings = _check_routed(tmp_path, capsys, one)
    (single,) = [w for w in warnings if "one provider" in w]
    assert "mistral (latency: only eu)" in single and "claude-sonnet (latency" in single
    assert "gpt-4o " not in single and "gpt-4o-mini" not in single


def test_check_config_warns_of_a_rule_whose_providers_serve_none_of_its_models(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, warnings = _check_routed(tmp_path, capsys)
    (rule,) = [w for w in warnings if "rules[" in w]
    assert rule == (
        "warning: routing.rules[0] (eu): providers eu serve none of the models it matches "
        "(gpt-*): every request it matches would be refused (404)"
    )
    # The rule's provider serves one of them: fine. A rule giving no model: not judged.
    fixed = ROUTED.replace("{mistral: null}", "{mistral: null, gpt-4o-eu: gpt-4o}")
    _, warnings = _check_routed(tmp_path, capsys, fixed)
    assert not [w for w in warnings if "rules[" in w]
    # With `model:` the rule sends that model: its providers must serve that one.
    renamed = ROUTED.replace(
        "      model: gpt-4o-mini\n", "      model: mistral\n      providers: [a]\n"
    )
    _, warnings = _check_routed(tmp_path, capsys, renamed)
    (rule,) = [w for w in warnings if "rules[1]" in w]
    assert "providers a serve none of the model it sends (mistral)" in rule


async def test_serve_subprocess_health_and_sigterm(tmp_path: Path, unused_tcp_port: int) -> None:
    env = {"PORT": str(unused_tcp_port), "HOST": "127.0.0.1"}  # the address from the environment
    started = time.monotonic()
    async with (
        serve_process(CONFIG, tmp_path, env, port=unused_tcp_port) as served,
        aiohttp.ClientSession() as http,
    ):
        print(f"startup to /health: {time.monotonic() - started:.3f}s")
        url, proc = served.url, served.proc
        auth = {"Authorization": "Bearer sk-team-a-secret"}
        async with http.get(url + "/v1/models") as resp:
            assert resp.status == 401
        async with http.get(url + "/v1/models", headers=auth) as resp:
            assert [m["id"] for m in (await resp.json())["data"]] == ["gpt-4o"]

        async def reloads_counted(result: str, count: int) -> None:
            async def counted() -> bool:
                async with http.get(url + "/metrics") as resp:
                    text = await resp.text()
                return f'llm_proxy_config_reloads_total{{result="{result}"}} {count}' in text

            await eventually(counted, what=f"{count} {result} reload(s) counted")

        async def reloads_after_sighup(result: str) -> list[str]:
            """Send SIGHUP, wait until the reload with `result` is counted, return models."""
            proc.send_signal(signal.SIGHUP)
            await reloads_counted(result, 1)
            async with http.get(url + "/v1/models", headers=auth) as resp:
                return [m["id"] for m in (await resp.json())["data"]]

        # SIGHUP re-reads the file; a broken file is rejected and the old config stays.
        served.config.write_text(CONFIG.replace('"gpt-4o": "gpt-4o"}', '"o3": "o3"}'))
        assert await reloads_after_sighup("ok") == ["gpt-4o", "o3"]
        served.config.write_text(CONFIG.replace("weight: 3", "weight: -1"))
        assert await reloads_after_sighup("error") == ["gpt-4o", "o3"]

        # Revoking every key during an incident locks the proxy; it never opens it.
        served.config.write_text(CONFIG.split("master_keys:")[0])
        proc.send_signal(signal.SIGHUP)
        await reloads_counted("ok", 2)
        for headers in ({}, auth):
            async with http.get(url + "/v1/models", headers=headers) as resp:
                assert resp.status == 401
                assert "No master key is enabled" in (await resp.json())["error"]["message"]
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.wait(), 15)
    assert proc.returncode == 0
    logs = served.log.decode()
    assert '"event":"starting"' in logs
    assert '"path":"/v1/models"' in logs
    assert '"event":"config_reloaded"' in logs
    assert "providers[0].weight (line 5): must be a positive integer" in logs
    assert logs.count('"event":"authentication_locked"') == 1
    assert "secret" not in logs


async def test_database_mode_cli(
    pg_dsn: str,
    tmp_path: Path,
    unused_tcp_port: int,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import asyncpg

    def run(*args: str) -> tuple[int, str]:
        code = main(list(args))
        out = capsys.readouterr()
        return code, out.out + out.err

    code, out = await asyncio.to_thread(run, "migrate", "status", "--db-url", pg_dsn)
    assert code == 0 and "001 config_tables" in out and "pending" in out
    code, out = await asyncio.to_thread(run, "migrate", "up", "--db-url", pg_dsn)
    # Every migration the package ships, in order (001 config_tables, 002 config_history, ...).
    applied = "\n".join(f"applied {m.version:03d} {m.name}" for m in discover())
    assert (code, out.strip()) == (0, applied)
    assert applied.startswith("applied 001 config_tables\napplied 002 config_history\n")
    code, out = await asyncio.to_thread(run, "migrate", "up", "--db-url", pg_dsn)
    assert (code, out.strip()) == (0, "up to date")
    path = tmp_path / "c.yaml"
    path.write_text(CONFIG)
    code, out = await asyncio.to_thread(run, "import-config", str(path), "--db-url", pg_dsn)
    assert (code, out.strip()) == (0, "imported 2 providers and 1 master keys")
    conn = await asyncpg.connect(pg_dsn)
    try:
        assert await conn.fetchval("SELECT count(*) FROM credentials WHERE key IS NULL") == 1
    finally:
        await conn.close()

    # Database mode: providers and keys from DB_URL, the address from a settings file.
    monkeypatch.delenv("PORT", raising=False)
    settings = f"server: {{host: 127.0.0.1, port: {unused_tcp_port}}}\n"
    auth = {"Authorization": "Bearer sk-team-a-secret"}
    async with (
        serve_process(settings, tmp_path, {"DB_URL": pg_dsn}, port=unused_tcp_port) as served,
        aiohttp.ClientSession() as http,
    ):
        async with http.get(served.url + "/v1/models", headers=auth) as resp:
            assert [m["id"] for m in (await resp.json())["data"]] == ["gpt-4o"]
        # The listener connects in the background; serving starts before it is in. Its own
        # log line says when: its connection shows in pg_stat_activity before it has LISTENed
        # and logged, and a SIGTERM then (seen under a loaded machine) ended it before the line.
        await eventually(lambda: b'"config_listener_connected"' in served.log, timeout=15)
        served.proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(served.proc.wait(), 15)
    assert served.proc.returncode == 0
    logs = served.log.decode()
    assert '"event":"database_mode"' in logs and '"config_listener_connected"' in logs
    assert "secret" not in logs


async def test_sigterm_drains_a_live_stream(
    tmp_path: Path, unused_tcp_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PORT", raising=False)
    async with serve(create_mock_app(MockOptions())) as mock:
        config = yaml_config(
            mock + "/v1",
            server={"host": "127.0.0.1", "port": unused_tcp_port},
            shutdown_grace_secs=10,
        )
        async with (
            serve_process(config, tmp_path, port=unused_tcp_port) as served,
            aiohttp.ClientSession() as http,
            aiohttp.ClientSession() as probe,
        ):
            url, proc = served.url, served.proc
            async with probe.get(url + "/health") as resp:
                assert resp.status == 200  # `probe` keeps this connection open (keep-alive)
            # A stream of 30 chunks, 50 ms apart (1.5 s), then SIGTERM mid-stream.
            body = {"model": "m", "stream": True, "mock_chunks": 30, "mock_delay_ms": 50}
            async with http.post(url + "/v1/chat/completions", json=body) as resp:
                first = await resp.content.readany()
                proc.send_signal(signal.SIGTERM)

                # Draining (once the signal is handled): /health says 503 on a live
                # connection...
                async def draining() -> bool:
                    async with probe.get(url + "/health") as health:
                        if health.status != 503:
                            return False
                        assert await health.json() == {"status": "draining"}
                        return True

                await eventually(draining, timeout=1)
                # ...and new connections are refused.
                async with aiohttp.ClientSession() as fresh:
                    with pytest.raises(aiohttp.ClientConnectionError):
                        await fresh.get(url + "/health")
                rest = await resp.read()
            await asyncio.wait_for(proc.wait(), 15)
    stream = first + rest
    assert stream.endswith(b"data: [DONE]\n\n")
    assert stream.count(b'"content":"tok') == 30  # nothing lost
    assert proc.returncode == 0
    logs = served.log.decode()
    assert '"event":"draining"' in logs and '"unfinished":0' in logs


def cli(*args: str, cwd: Path, timeout: float = 30, **env: str) -> subprocess.CompletedProcess[str]:
    """`llm-proxy ARGS` as a real process, in `cwd`, with `env` added to a clean environment."""
    clean = {k: v for k, v in os.environ.items() if k not in OVERRIDES}
    return subprocess.run(
        [sys.executable, "-m", "llm_proxy", *args],
        cwd=cwd, env={**clean, "LOG_FORMAT": "json", **env},
        capture_output=True, text=True, timeout=timeout, check=False,
    )  # fmt: skip


OVERRIDES = ("DB_URL", "CONFIG_PATH", "HOST", "PORT", "REQUIRE_AUTH", "ADMIN_KEY", "VERIFY_SSL")
SETTINGS = "server: {host: 127.0.0.1, port: 9}\nrequest_timeout_secs: 30\n"


def test_check_config_never_prints_url_credentials(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    # Credentials in an api_base are refused (the key goes in api_key), and not echoed.
    path.write_text(
        CONFIG.replace("http://127.0.0.1:9/v1", "https://user:hunter2@gw.example:8443/v1", 1)
    )
    done = cli("check-config", str(path), cwd=tmp_path)
    assert done.returncode == 1
    assert "https://***@gw.example:8443/v1" in done.stderr
    assert "hunter2" not in done.stdout + done.stderr
    path.write_text(CONFIG + "rate_limit_backend: redis://:redis-pw@127.0.0.1:6379/0\n")
    done = cli("check-config", str(path), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "rate limit backend: redis://***@127.0.0.1:6379/0" in done.stdout
    assert "redis-pw" not in done.stdout + done.stderr
    # The response cache's Redis, its own or the rate limiter's, is shown without its password.
    for cache in ("{backend: redis}", "{backend: redis, url: 'redis://:cache-pw@127.0.0.1/1'}"):
        path.write_text(
            CONFIG + f"rate_limit_backend: redis://:redis-pw@127.0.0.1:6379/0\ncache: {cache}\n"
        )
        done = cli("check-config", str(path), cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        assert "response cache: redis redis://***@127.0.0.1" in done.stdout
        assert "-pw" not in done.stdout + done.stderr


def test_check_config_reports_infinity_as_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(
        CONFIG.replace("requests_per_second: 2", "requests_per_second: .inf")
        + "request_timeout_secs: .nan\n"
    )
    done = cli("check-config", str(path), cwd=tmp_path)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert (
        "master_keys[0].rate_limit.requests_per_second (line 14): must be a finite positive "
        "number, got inf" in done.stderr
    )
    assert "request_timeout_secs (line 15): must be a finite positive number" in done.stderr


def test_check_config_checks_what_serve_checks_in_database_mode(tmp_path: Path) -> None:
    """With DB_URL set, `serve` refuses a file with providers: so does `check-config`
    (a systemd unit runs it before every start)."""
    path = tmp_path / "c.yaml"
    path.write_text(CONFIG)
    dsn = "postgresql://llm:db-pw@127.0.0.1:9/llm_proxy"
    checked = cli("check-config", str(path), cwd=tmp_path, DB_URL=dsn)
    served = cli("serve", "--config", str(path), cwd=tmp_path, DB_URL=dsn)
    assert (checked.returncode, served.returncode) == (1, 2)
    refusal = "in database mode (DB_URL set) providers and master_keys live in the database"
    assert refusal in checked.stderr and refusal in served.stderr
    # A settings-only file passes, without touching the database (down here: port 9).
    path.write_text(SETTINGS)
    checked = cli("check-config", str(path), cwd=tmp_path, DB_URL=dsn)
    assert checked.returncode == 0, checked.stderr
    assert "database 127.0.0.1:9/llm_proxy at start (not checked; add --connect" in checked.stdout
    assert "db-pw" not in checked.stdout + checked.stderr


@pytest.mark.parametrize(
    ("dsn", "problem"),
    [
        ("postgresql://llm:db-pw@127.0.0.1:notaport/x", "the port is not a number 1-65535"),
        ("postgresql://llm:db/pw@127.0.0.1:99999/x", "the port is not a number 1-65535"),
        ("llm:db-pw@127.0.0.1/x", "it must start with postgresql://"),
        ("postgresql://llm:db-pw@127.0.0.1/x?sslmode=always", "sslmode must be one of"),
    ],
)
def test_malformed_dsn_is_one_line_and_an_immediate_exit(
    tmp_path: Path, dsn: str, problem: str
) -> None:
    started = time.monotonic()
    served = cli("serve", cwd=tmp_path, DB_URL=dsn)
    assert time.monotonic() - started < 10  # no 30 s of retries
    checked = cli("check-config", cwd=tmp_path, DB_URL=dsn)
    migrated = cli("migrate", "status", cwd=tmp_path, DB_URL=dsn)
    for done, code in ((served, 2), (checked, 1), (migrated, 2)):
        assert done.returncode == code
        assert done.stderr.startswith("error: invalid database DSN: ")
        assert problem in done.stderr
        assert "Traceback" not in done.stderr
        assert "db-pw" not in done.stderr and "pw@" not in done.stderr


async def test_missing_database_or_role_is_one_line_and_an_immediate_exit(
    pg_server: str, tmp_path: Path
) -> None:
    from urllib.parse import urlsplit

    server = urlsplit(pg_server)
    at = f"{server.hostname}:{server.port or 5432}"
    cases = [
        (f"postgresql://{server.username}:db-pw@{at}/llm_proxy_no_such_db", "does not exist"),
        (f"postgresql://llm_proxy_no_such_role:db-pw@{at}/postgres", "refused the login"),
    ]
    for dsn, problem in cases:
        started = time.monotonic()
        served = await asyncio.to_thread(cli, "serve", cwd=tmp_path, DB_URL=dsn)
        assert time.monotonic() - started < 10
        checked = await asyncio.to_thread(
            cli, "check-config", "--connect", cwd=tmp_path, DB_URL=dsn
        )
        for done, code in ((served, 2), (checked, 1)):
            assert done.returncode == code
            lines = done.stderr.strip().splitlines()
            assert len(lines) == 1 and lines[0].startswith("error: database "), done.stderr
            assert problem in lines[0]
            assert "db-pw" not in done.stderr


async def test_check_config_connect_validates_the_rows(config_dsn: str, tmp_path: Path) -> None:
    import asyncpg

    conn = await asyncpg.connect(config_dsn)
    try:
        await conn.execute(
            "INSERT INTO providers (name, api_base, model_mapping) "
            """VALUES ('db-provider', 'http://127.0.0.1:9/v1', '{"m": null}')"""
        )
        await conn.execute("INSERT INTO credentials (name, key) VALUES ('team-a', 'sk-team-a-1')")
        done = await asyncio.to_thread(
            cli, "check-config", "--connect", cwd=tmp_path, DB_URL=config_dsn
        )
        assert done.returncode == 0, done.stderr
        assert "db-provider  weight 1 (100.0%)  http://127.0.0.1:9/v1" in done.stdout
        assert "master keys (1): team-a" in done.stdout
        await conn.execute("""UPDATE providers SET model_mapping = '{"bad-(*": null}'""")
        done = await asyncio.to_thread(
            cli, "check-config", "--connect", cwd=tmp_path, DB_URL=config_dsn
        )
        assert done.returncode == 1
        assert "column model_mapping): invalid regular expression" in done.stderr
    finally:
        await conn.close()
