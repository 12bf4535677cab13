"""The database commands: `migrate`, `config history|rollback`, `export-config` and
`import-config` (of a YAML file, or of the original llm-proxy's database). Each reads its
arguments, opens its connections (`config.database.connect`), calls the config store
(`config.migrate`, `config.history`, `config.database`, `config.db_write`,
`config.original_import`, `config.original_logs`) and prints what it did; none holds SQL of
its own.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import os
import sys
from pathlib import Path

import asyncpg
import orjson

from llm_proxy.cli.check import load_file
from llm_proxy.config import history, migrate
from llm_proxy.config.database import StartupError, connect, describe_dsn, dsn_problem, load_once
from llm_proxy.config.db_write import upsert
from llm_proxy.config.export import export_yaml
from llm_proxy.config.issues import ConfigError
from llm_proxy.config.lockout import locked_rows
from llm_proxy.config.model import Config
from llm_proxy.config.original_import import NotOriginalError, Written, read_original, write_plan
from llm_proxy.config.original_logs import DEFAULT_LIMIT, copy_logs
from llm_proxy.config.original_map import ImportPlan, plan_import


def _dsn_arg(db_url: str | None) -> str | None:
    """The DSN of `migrate` and `import-config`; None (after saying why) when unusable."""
    dsn = db_url or os.environ.get("DB_URL")
    if not dsn:
        print("error: set DB_URL (or pass --db-url)", file=sys.stderr)
        return None
    problem = dsn_problem(dsn)
    if problem is not None:
        print(f"error: {problem}", file=sys.stderr)
        return None
    return dsn


def migrate_schema(action: str, db_url: str | None, steps: int) -> int:
    dsn = _dsn_arg(db_url)
    if dsn is None:
        return 2

    async def run() -> int:
        conn = await connect(dsn, connect_timeout=10)
        try:
            if action == "up":
                ran = await migrate.migrate_up(conn)
                for m in ran:
                    print(f"applied {m.version:03d} {m.name}")
                if not ran:
                    print("up to date")
            elif action == "down":
                for m in await migrate.migrate_down(conn, steps):
                    print(f"reverted {m.version:03d} {m.name}")
            else:
                print(f"database {describe_dsn(dsn)}")
                print("\n".join(await migrate.status_lines(conn)))
        finally:
            await conn.close()
        return 0

    try:
        return asyncio.run(run())
    except (OSError, asyncpg.PostgresError, ValueError) as exc:
        print(f"error: migrate {action}: {exc}", file=sys.stderr)
        return 1


def config_history(args: argparse.Namespace) -> int:
    """`config history [VERSION]` and `config rollback VERSION`."""
    dsn = _dsn_arg(args.db_url)
    if dsn is None:
        return 2

    async def run() -> int:
        conn = await connect(dsn, connect_timeout=10)
        try:
            if args.config_command == "rollback":
                return await _rollback(conn, args)
            if args.version is not None:
                return await _show_version(conn, args.version)
            return await _show_history(conn, args)
        finally:
            await conn.close()

    try:
        return asyncio.run(run())
    except history.HistoryError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except (OSError, asyncpg.PostgresError) as exc:
        print(f"error: config {args.config_command}: {exc}", file=sys.stderr)
        return 1


async def _rollback(conn: asyncpg.Connection, args: argparse.Namespace) -> int:
    before = (await history.bounds(conn))[1]
    done = await history.rollback(
        conn,
        args.version,
        f"cli:{getpass.getuser()}",
        restore_revoked_keys=args.restore_revoked_keys,
    )
    if done.version == before:
        print(f"config is already as it was at version {args.version}")
    else:
        print(f"rolled back to version {args.version}: now version {done.version}")
    if done.keys_left_out:
        kept = ", ".join(f"{name} ({why})" for name, why in done.keys_left_out)
        print(f"master keys kept revoked: {kept} (--restore-revoked-keys revives them)")
    return 0


async def _show_version(conn: asyncpg.Connection, version: int) -> int:
    changes = await history.change(conn, version)
    if not changes:
        print(f"error: no version {version} in the history", file=sys.stderr)
        return 1
    for c in changes:
        print(orjson.dumps(c.as_dict(), option=orjson.OPT_INDENT_2).decode())
    return 0


async def _show_history(conn: asyncpg.Connection, args: argparse.Namespace) -> int:
    changes = await history.history(conn, table=args.table, row_id=args.row, limit=args.limit)
    first, current = await history.bounds(conn)
    print(f"config version {current}; history from version {first}")
    for c in changes:
        what = ", ".join(c.fields_changed()) if c.operation == "UPDATE" else ""
        print(
            f"{c.version:>6}  {c.changed_at:%Y-%m-%d %H:%M:%S}  {c.changed_by:<20} "
            f"{c.operation:<6} {c.table}/{c.row_id} {c.name or ''}"
            + (f"  ({what})" if what else "")
        )
    return 0


def export_config(db_url: str | None, output: str | None, *, with_secrets: bool) -> int:
    """The database's providers and master keys as YAML (see `llm_proxy.config.export`)."""
    dsn = _dsn_arg(db_url)
    if dsn is None:
        return 2
    try:
        config, fetched = asyncio.run(load_once(dsn, Config()))
    except (StartupError, ConfigError) as exc:
        print(f"error: export-config: {exc}", file=sys.stderr)
        return 1
    text = export_yaml(config, version=fetched.version, with_secrets=with_secrets)
    if output is None:
        sys.stdout.write(text)
        return 0
    path = Path(output)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # it may hold keys
    with os.fdopen(fd, "w") as f:
        f.write(text)
    print(f"wrote {path} (config version {fetched.version})", file=sys.stderr)
    return 0


class _DryRun(Exception):
    """Raised to roll the import's transaction back after reading what it would change."""


def import_config(path_arg: str, db_url: str | None, *, dry_run: bool = False) -> int:
    """Load providers, teams and master keys from a YAML file into the database (upsert by
    name; its routing section, if any, replaces the routing tables' rows), in one transaction
    (one config version). With `dry_run`, print the changes it would make
    (read back from the config history the transaction records) and roll it back."""
    dsn = _dsn_arg(db_url)
    if dsn is None:
        return 2
    loaded = load_file(path_arg)
    if loaded is None:
        return 1
    _, config = loaded

    async def run() -> None:
        conn = await connect(dsn, connect_timeout=10)
        try:
            async with conn.transaction():
                await upsert(conn, config)
                if config.require_auth:
                    await _say_if_locked(conn)
                if dry_run:
                    await _show_pending(conn)
                    raise _DryRun
        finally:
            await conn.close()

    try:
        asyncio.run(run())
    except _DryRun:
        return 0
    except (OSError, asyncpg.PostgresError) as exc:
        print(f"error: import-config: {exc}", file=sys.stderr)
        return 1
    teams = f", {len(config.teams)} teams" if config.teams else ""
    routing = " and the routing section" if config.routing.configured else ""
    print(
        f"imported {len(config.providers)} providers and {len(config.master_keys)} master keys"
        + teams
        + routing
    )
    return 0


async def _say_if_locked(conn: asyncpg.Connection) -> None:
    """One line (on stderr: the output stays the import's report) when the rows as the import
    leaves them lock the proxy (no enabled master key), with the fix: a proxy requiring
    authentication refuses every /v1 request then."""
    row = await conn.fetchrow(
        "SELECT count(*) FILTER (WHERE is_enabled) AS enabled,"
        " count(*) FILTER (WHERE NOT is_enabled) AS disabled FROM credentials"
    )
    line = locked_rows(row["enabled"], row["disabled"])
    if line is not None:
        print(f"warning: {line}", file=sys.stderr)


async def _show_pending(conn: asyncpg.Connection) -> None:
    """What the import's open transaction changed, as the config history records it."""
    changes = await history.pending(conn)
    for c in changes:
        what = f" ({', '.join(c.fields_changed())})" if c.operation == "UPDATE" else ""
        print(f"{c.operation:<6} {c.table}/{c.name}{what}")
    if not changes:
        print("no changes")


def import_config_command(args: argparse.Namespace) -> int:
    """`import-config FILE` or `import-config --from-original-db DSN` (exactly one)."""
    if (args.file is None) == (args.from_original_db is None):
        print("error: import-config takes a FILE or --from-original-db DSN", file=sys.stderr)
        return 2
    if args.file is not None:
        if args.with_logs:
            print("error: --with-logs needs --from-original-db", file=sys.stderr)
            return 2
        return import_config(args.file, args.db_url, dry_run=args.dry_run)
    return import_original(
        args.from_original_db,
        args.db_url,
        dry_run=args.dry_run,
        with_logs=args.with_logs,
        logs_limit=args.logs_limit,
    )


def import_original(
    source_dsn: str,
    db_url: str | None,
    *,
    dry_run: bool = False,
    with_logs: bool = False,
    logs_limit: int = DEFAULT_LIMIT,
) -> int:
    """Import the original llm-proxy's providers and credentials (`config.original_map` says
    what maps to what) in one transaction, printing each row added or changed, the rows of
    ours left as they are, and one line per thing not carried over. With `dry_run`, the same
    output and a rollback. With `with_logs` (not in a dry run), then its newest logs."""
    dsn = _dsn_arg(db_url)
    if dsn is None:
        return 2
    problem = dsn_problem(source_dsn)
    if problem is not None:
        print(f"error: --from-original-db: {problem}", file=sys.stderr)
        return 2
    if logs_limit < 0:
        print("error: --logs-limit must be 0 or more", file=sys.stderr)
        return 2

    async def run() -> None:
        source = await connect(source_dsn, connect_timeout=10)
        target = await connect(dsn, connect_timeout=10)
        try:
            original = await read_original(source)
            plan = plan_import(original)
            print(
                f"original database {describe_dsn(source_dsn)}: config version "
                f"{original.version}, {len(original.providers)} providers, "
                f"{len(original.credentials)} credentials"
            )
            async with target.transaction():
                written = await write_plan(target, plan, f"cli:{getpass.getuser()}")
                _show_import(plan, written)
                await _say_if_locked(target)
                if dry_run:
                    if with_logs:
                        print("logs: not copied in a dry run")
                    raise _DryRun
            version = (await history.bounds(target))[1]
            done = "imported" if written.changes else "nothing to change"
            print(f"{done}: config version {version}")
            if with_logs:
                copied = await copy_logs(source, target, limit=logs_limit)
                print(
                    f"logs: {copied.requests_added} request logs added "
                    f"({copied.requests_read} read), {copied.errors_added} error logs added "
                    f"({copied.errors_read} read)"
                )
        finally:
            await target.close()
            await source.close()

    try:
        asyncio.run(run())
    except _DryRun:
        print("dry run: nothing changed")
        return 0
    except NotOriginalError as exc:
        print(f"error: import-config: {exc}", file=sys.stderr)
        return 1
    except (OSError, asyncpg.PostgresError) as exc:
        print(f"error: import-config: {exc}", file=sys.stderr)
        return 1
    return 0


def _show_import(plan: ImportPlan, written: Written) -> None:
    """The diff: each row added or changed, how many are unchanged, ours left as they are,
    and what is not carried over (one line each, with why)."""
    for c in written.changes:
        if c.operation == "INSERT":
            disabled = c.after is not None and c.after.get("is_enabled") is False
            print(f"add     {c.table}/{c.name}" + (" (disabled)" if disabled else ""))
        else:
            print(f"change  {c.table}/{c.name} ({', '.join(c.fields_changed())})")
    rows = len(plan.providers) + len(plan.master_keys) - len(written.not_carried)
    print(f"unchanged: {rows - len(written.changes)}")
    if written.left:
        print(f"left as they are (not in the original): {', '.join(written.left)}")
    not_carried = plan.not_carried + written.not_carried
    if not_carried:
        print(f"not carried over ({len(not_carried)}):")
        for item in not_carried:
            print(f"  {item.line()}")
