"""Config history and rollback against a real PostgreSQL: what the database records for psql
edits (who, which version, never a secret), one transaction as one version, rollback across a
provider delete and a key rotation reaching a running proxy through NOTIFY, and the CLI."""

from __future__ import annotations

import asyncio
import hashlib

import aiohttp
import asyncpg
import pytest

from llm_proxy.cli import main
from llm_proxy.config import history
from llm_proxy.config.model import Config
from tests.helpers import ProxyFactory, Upstream
from tests.helpers.admin import call
from tests.helpers.db import add_provider, db_version, start_db_proxy, wait_version


async def test_psql_edits_are_recorded_with_the_role_and_without_secrets(
    sql: asyncpg.Connection,
) -> None:
    await add_provider(sql, "alpha", "http://127.0.0.1:9/v1", {"m": None})
    await sql.execute("INSERT INTO credentials (name, key) VALUES ('team', 'sk-team-secret-1')")
    await sql.execute("UPDATE providers SET weight = 3")
    await sql.execute("UPDATE providers SET weight = 3")  # no change: no version, no record
    await sql.execute("DELETE FROM providers WHERE false")
    changes = await history.history(sql)
    version = int(await db_version(sql))
    assert [(c.version, c.table, c.operation) for c in changes] == [
        (version, "providers", "UPDATE"),
        (version - 1, "credentials", "INSERT"),
        (version - 2, "providers", "INSERT"),
    ]
    assert {c.changed_by for c in changes} == {"db:postgres"}
    assert changes[0].fields_changed() == ["weight"]
    assert changes[0].before is not None and changes[0].before["weight"] == 1
    assert changes[0].after is not None and changes[0].after["weight"] == 3
    # The provider key is masked (with its digest), the master key known by hash only.
    after = changes[0].after
    assert after["api_key"] == "sk-...-key"
    assert after["api_key_sha256"] == hashlib.sha256(b"sk-alpha-provider-key").hexdigest()
    everything = str(await sql.fetch("SELECT * FROM config_history"))
    assert "sk-alpha-provider-key" not in everything
    assert "sk-team-secret-1" not in everything
    key_row = changes[1].after
    assert key_row is not None and "key" not in key_row and key_row["key_prefix"] == "sk-tea..."


async def test_one_transaction_is_one_version(sql: asyncpg.Connection) -> None:
    before = int(await db_version(sql))
    async with sql.transaction():
        await add_provider(sql, "alpha", "http://127.0.0.1:9/v1", {"m": None})
        await add_provider(sql, "beta", "http://127.0.0.1:9/v1", {"m": None})
        await sql.execute("UPDATE providers SET weight = 2 WHERE name = 'alpha'")
    assert int(await db_version(sql)) == before + 1
    changes = await history.change(sql, before + 1)
    assert [(c.name, c.operation) for c in changes] == [
        ("alpha", "INSERT"),
        ("beta", "INSERT"),
        ("alpha", "UPDATE"),
    ]


async def test_rollback_across_a_delete_and_a_key_rotation_reaches_a_running_proxy(
    config_dsn: str,
    sql: asyncpg.Connection,
    upstream: Upstream,
    start_proxy: ProxyFactory,
    http: aiohttp.ClientSession,
) -> None:
    await add_provider(sql, "alpha", upstream.api_base, {"m": None})
    await sql.execute("INSERT INTO credentials (name, key) VALUES ('team', 'sk-team-old-key')")
    await sql.execute("INSERT INTO credentials (name, key) VALUES ('gone', 'sk-gone-old-key')")
    good = int(await db_version(sql))
    url = await start_db_proxy(start_proxy, config_dsn, Config())
    gone = {"Authorization": "Bearer sk-gone-old-key"}
    old = {"Authorization": "Bearer sk-team-old-key"}
    new = {"Authorization": "Bearer sk-team-new-key"}

    async def status(headers: dict[str, str]) -> int:
        async with http.post(
            url + "/v1/chat/completions", json={"model": "m"}, headers=headers
        ) as r:
            await r.read()
            return r.status

    assert await status(old) == 200 and await status(gone) == 200
    # An incident in psql: the provider deleted, a key rotated (it leaked), another deleted.
    await sql.execute("DELETE FROM providers")
    await sql.execute("UPDATE credentials SET key = 'sk-team-new-key' WHERE name = 'team'")
    await sql.execute("DELETE FROM credentials WHERE name = 'gone'")
    await wait_version(http, url, await db_version(sql))
    assert await status(old) == 401
    assert await status(new) == 404  # no provider serves `m` any more
    done = await history.rollback(sql, good, "admin:ops")
    new_version = done.version
    await wait_version(http, url, str(new_version))
    # The provider is back; the revoked keys stay revoked, and the answer names them.
    assert await status(new) == 200
    assert await status(old) == 401 and await status(gone) == 401
    assert done.keys_left_out == (("gone", "deleted"), ("team", "rotated"))
    row = await sql.fetchrow("SELECT id, api_key FROM providers WHERE name = 'alpha'")
    assert row is not None and row["api_key"] == "sk-alpha-provider-key"
    # The rollback is itself one recorded change, by who asked for it.
    changes = await history.change(sql, new_version)
    assert {c.changed_by for c in changes} == {"admin:ops"}
    assert {(c.table, c.operation) for c in changes} >= {("providers", "INSERT")}
    # Nothing differs any more but the keys left out: rolling back again changes nothing.
    again = await history.rollback(sql, good, "admin:ops")
    assert again.version == new_version and again.keys_left_out == done.keys_left_out
    # Asked explicitly, the revoked keys come back too.
    revived = await history.rollback(sql, good, "admin:ops", restore_revoked_keys=True)
    assert revived.keys_left_out == ()
    await wait_version(http, url, str(revived.version))
    assert await status(old) == 200 and await status(gone) == 200
    assert await status(new) == 401


async def test_truncate_is_recorded_and_undone(sql: asyncpg.Connection) -> None:
    await sql.execute("INSERT INTO credentials (name, key) VALUES ('a', 'sk-a-12345678')")
    await sql.execute("INSERT INTO credentials (name, key) VALUES ('b', 'sk-b-12345678')")
    good = int(await db_version(sql))
    await sql.execute("TRUNCATE credentials")
    changes = await history.change(sql, good + 1)
    assert sorted((c.name, c.operation) for c in changes) == [("a", "DELETE"), ("b", "DELETE")]
    done = await history.rollback(sql, good, "cli:test")  # deleted keys: back only if asked
    assert done.keys_left_out == (("a", "deleted"), ("b", "deleted"))
    assert await sql.fetchval("SELECT count(*) FROM credentials") == 0
    await history.rollback(sql, good, "cli:test", restore_revoked_keys=True)
    assert await sql.fetchval("SELECT count(*) FROM credentials") == 2


async def test_rollback_outside_the_history_changes_nothing(sql: asyncpg.Connection) -> None:
    await add_provider(sql, "alpha", "http://127.0.0.1:9/v1", {"m": None})
    first, current = await history.bounds(sql)
    for version in (first - 1, current + 1):
        with pytest.raises(history.HistoryError, match="not in the history"):
            await history.rollback(sql, version, "cli:test")
    assert await history.bounds(sql) == (first, current)
    # A provider key the operator purged from config_secrets cannot be restored: refused whole.
    good = current
    await sql.execute("DELETE FROM providers")
    await sql.execute("DELETE FROM config_secrets")
    with pytest.raises(history.HistoryError, match="no longer in config_secrets"):
        await history.rollback(sql, good, "cli:test")
    assert await sql.fetchval("SELECT count(*) FROM providers") == 0


async def test_the_cli_shows_history_and_rolls_back(
    config_dsn: str, sql: asyncpg.Connection, capsys: pytest.CaptureFixture[str]
) -> None:
    await add_provider(sql, "alpha", "http://127.0.0.1:9/v1", {"m": None})
    good = int(await db_version(sql))
    await sql.execute("UPDATE providers SET weight = 7")

    def run(*args: str) -> tuple[int, str]:
        code = main(list(args))
        out = capsys.readouterr()
        return code, out.out + out.err

    code, out = await asyncio.to_thread(run, "config", "history", "--db-url", config_dsn)
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == f"config version {good + 1}; history from version 1"
    assert "UPDATE providers/1 alpha  (weight)" in lines[1] and "db:postgres" in lines[1]
    code, out = await asyncio.to_thread(
        run, "config", "history", str(good + 1), "--db-url", config_dsn
    )
    assert code == 0 and '"fields_changed": [\n    "weight"\n  ]' in out
    assert "sk-alpha-provider-key" not in out
    code, out = await asyncio.to_thread(
        run, "config", "rollback", str(good), "--db-url", config_dsn
    )
    assert (code, out.strip()) == (0, f"rolled back to version {good}: now version {good + 2}")
    assert await sql.fetchval("SELECT weight FROM providers") == 1
    code, out = await asyncio.to_thread(run, "config", "rollback", "999", "--db-url", config_dsn)
    assert code == 1 and "config version 999 is not in the history" in out
    # A key rotated since a version: kept revoked, and said so; revived only when asked.
    await sql.execute("INSERT INTO credentials (name, key) VALUES ('team', 'sk-team-old-key')")
    with_key = int(await db_version(sql))
    await sql.execute("UPDATE credentials SET key = 'sk-team-new-key'")
    code, out = await asyncio.to_thread(
        run, "config", "rollback", str(with_key), "--db-url", config_dsn
    )
    assert code == 0 and "master keys kept revoked: team (rotated)" in out
    assert "sk-team" not in out
    code, out = await asyncio.to_thread(
        run, "config", "rollback", str(with_key), "--restore-revoked-keys", "--db-url", config_dsn
    )
    assert code == 0 and "kept revoked" not in out
    digest = hashlib.sha256(b"sk-team-old-key").digest()
    assert await sql.fetchval("SELECT key_hash FROM credentials") == digest


async def test_the_admin_rollback_names_the_keys_it_kept_revoked(
    config_dsn: str,
    sql: asyncpg.Connection,
    start_proxy: ProxyFactory,
    http: aiohttp.ClientSession,
) -> None:
    await sql.execute("INSERT INTO credentials (name, key) VALUES ('team', 'sk-team-old-key')")
    await sql.execute("INSERT INTO credentials (name, key) VALUES ('gone', 'sk-gone-old-key')")
    good = int(await db_version(sql))
    await sql.execute("UPDATE credentials SET key = 'sk-team-new-key' WHERE name = 'team'")
    await sql.execute("DELETE FROM credentials WHERE name = 'gone'")
    await sql.execute("INSERT INTO credentials (name, key) VALUES ('later', 'sk-later-key-1')")
    base = Config(admin_keys=(("ops", "adm-ops-0123456789abcdef"),))
    url = await start_db_proxy(start_proxy, config_dsn, base)
    rollback = url + "/admin/v1/config/rollback"
    status, body = await call(
        http, "POST", rollback, json={"version": good, "restore_revoked_keys": 1}
    )
    assert status == 400 and body["error"]["param"] == "restore_revoked_keys"
    status, done = await call(http, "POST", rollback, json={"version": good})
    assert status == 200 and done["served"] is True, done
    assert done["keys_left_out"] == [
        {"name": "gone", "reason": "deleted"},
        {"name": "team", "reason": "rotated"},
    ]
    assert "sk-" not in str(done)
    names = await sql.fetch("SELECT name, key_hash FROM credentials ORDER BY name")
    # `later` did not exist at that version; `team` keeps its new key.
    assert [(r["name"], r["key_hash"]) for r in names] == [
        ("team", hashlib.sha256(b"sk-team-new-key").digest())
    ]
    status, done = await call(
        http, "POST", rollback, json={"version": good, "restore_revoked_keys": True}
    )
    assert status == 200 and done["keys_left_out"] == []
    names = await sql.fetch("SELECT name FROM credentials ORDER BY name")
    assert [r["name"] for r in names] == ["gone", "team"]
