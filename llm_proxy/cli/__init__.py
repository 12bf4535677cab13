"""The `llm-proxy` command: its arguments, and which module runs each command.

* `serve` — `cli/serve.py`;
* `check-config` — `cli/check.py` (the checks `serve` makes first, and a summary);
* `migrate`, `config history|rollback`, `export-config`, `import-config` —
  `cli/db_commands.py`, thin over the config store (`config/database.py`, `config/db_write.py`);
* `mock-upstream` — `llm_proxy.testing.mock`, a fake OpenAI API (and Anthropic's, Gemini's,
  Vertex AI's and Bedrock's) for demos, tests and benchmarks.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Final

from llm_proxy import __version__

# `llm-proxy --help`'s description.
_DESCRIPTION: Final = (
    "Command line: `llm-proxy serve | check-config | migrate | import-config | mock-upstream`."
)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from llm_proxy.cli.check import load_startup_env

    if not load_startup_env():  # ./.env, for every command and every variable
        return 2
    if args.command == "serve":
        from llm_proxy.cli.serve import serve

        return serve(args.config, args.host, args.port, args.db_url)
    if args.command == "check-config":
        from llm_proxy.cli.check import check_config

        return check_config(args.file, args.db_url, connect=args.connect)
    if args.command == "mock-upstream":
        from llm_proxy.testing.mock import MockOptions, run_mock

        options = MockOptions(
            chunks=args.chunks,
            delay_ms=args.delay_ms,
            name=args.name,
            anthropic_key=args.anthropic_key,
            tool=args.tool,
            fail_status=args.fail_status,
            fail_type=args.fail_type,
            fail_times=args.fail_times,
            retry_after=args.retry_after,
            error_after=args.error_after,
            quirks=frozenset(filter(None, args.quirks.split(","))),
            record=args.record,
        )
        run_mock(args.host, args.port, options)
        return 0
    from llm_proxy.cli import db_commands

    if args.command == "migrate":
        return db_commands.migrate_schema(args.action, args.db_url, args.steps)
    if args.command == "import-config":
        return db_commands.import_config_command(args)
    if args.command == "export-config":
        return db_commands.export_config(args.db_url, args.output, with_secrets=args.with_secrets)
    return db_commands.config_history(args)  # "config"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="llm-proxy", description=_DESCRIPTION)
    parser.add_argument("--version", action="version", version=f"llm-proxy {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the proxy")
    serve.add_argument("--config", help="YAML config file (default: $CONFIG_PATH, config.yaml)")
    serve.add_argument("--host", help="listen address (overrides HOST and server.host)")
    serve.add_argument("--port", type=int, help="listen port (overrides PORT and server.port)")
    serve.add_argument("--db-url", help="PostgreSQL DSN: database mode (default: $DB_URL)")

    mig = sub.add_parser("migrate", help="apply or inspect database schema migrations")
    mig.add_argument("action", choices=("up", "down", "status"))
    mig.add_argument("--steps", type=int, default=1, help="migrations to revert with `down`")
    mig.add_argument("--db-url", help="PostgreSQL DSN (default: $DB_URL)")

    imp = sub.add_parser(
        "import-config",
        help="load a YAML file's (or the original llm-proxy database's) providers and keys",
    )
    imp.add_argument("file", nargs="?", help="YAML config file (or --from-original-db)")
    imp.add_argument("--db-url", help="PostgreSQL DSN (default: $DB_URL)")
    imp.add_argument(
        "--dry-run", action="store_true", help="print what would change; change nothing"
    )
    imp.add_argument(
        "--from-original-db",
        metavar="DSN",
        help="read the original llm-proxy's database (maywzh/llm-proxy) instead of a file",
    )
    imp.add_argument(
        "--with-logs", action="store_true", help="with --from-original-db: copy its logs too"
    )
    imp.add_argument(
        "--logs-limit",
        type=int,
        default=100_000,
        metavar="N",
        help="with --with-logs: the newest N request logs and N error logs (default 100000)",
    )

    exp = sub.add_parser("export-config", help="write the DB's providers and keys as YAML")
    exp.add_argument("--db-url", help="PostgreSQL DSN (default: $DB_URL)")
    exp.add_argument("-o", "--output", help="file to write (default: standard output)")
    exp.add_argument(
        "--with-secrets",
        action="store_true",
        help="write provider keys themselves, not ${LLM_PROXY_KEY_<NAME>} references",
    )

    check = sub.add_parser(
        "check-config", help="check what `serve` would check, without serving; print a summary"
    )
    check.add_argument("file", nargs="?", help="config file (default: $CONFIG_PATH)")
    check.add_argument("--db-url", help="PostgreSQL DSN: database mode (default: $DB_URL)")
    check.add_argument(
        "--connect",
        action="store_true",
        help="database mode: also connect once and validate the providers and keys rows",
    )
    _add_config_commands(
        sub.add_parser("config", help="database mode: the config history, and rollback")
    )

    mock = sub.add_parser(
        "mock-upstream",
        help="serve a fake OpenAI, Anthropic, Gemini, Vertex AI and Bedrock API on loopback",
    )
    mock.add_argument("--host", default="127.0.0.1")
    mock.add_argument("--port", type=int, default=18001)
    mock.add_argument("--chunks", type=int, default=20, help="content chunks per stream")
    mock.add_argument("--delay-ms", type=float, default=20.0, help="delay between chunks")
    mock.add_argument("--name", default="mock", help="instance name: in its ids, x-mock-instance")
    mock.add_argument(
        "--record",
        action="store_true",
        help="keep the last 1,000 requests (headers and bodies): GET /mock/requests shows them",
    )
    _add_mock_behaviour(mock)
    return parser


def _add_mock_behaviour(mock: argparse.ArgumentParser) -> None:
    """The mock's Anthropic Messages options and OpenAI stream quirks (`MockOptions`)."""
    mock.add_argument("--anthropic-key", help="/v1/messages: require this x-api-key")
    mock.add_argument(
        "--tool",
        default="first",
        help="/v1/messages: the tool to call when offered tools: first (default), none, a name",
    )
    mock.add_argument(
        "--fail-status", type=int, help="/v1/messages: answer this status (e.g. 529, 429)"
    )
    mock.add_argument("--fail-type", help="its Anthropic error type (default: the status's)")
    mock.add_argument(
        "--fail-times", type=int, default=0, help="fail only the first N requests (0: all)"
    )
    mock.add_argument("--retry-after", type=int, help="seconds, in a retry-after header")
    mock.add_argument(
        "--error-after", type=int, help="/v1/messages streams: event: error after N deltas"
    )
    mock.add_argument(
        "--quirks",
        default="",
        help="chat streams, comma-separated: usage-null, usage-after-finish, usage-in-finish, "
        "no-done, merged-chunks, reasoning",
    )


def _add_config_commands(cfg: argparse.ArgumentParser) -> None:
    cfg_sub = cfg.add_subparsers(dest="config_command", required=True)
    hist = cfg_sub.add_parser(
        "history", help="recorded changes to providers and keys, newest first"
    )
    hist.add_argument("version", nargs="?", type=int, help="show this version's changes in full")
    hist.add_argument("--table", choices=("providers", "credentials", "teams"))
    hist.add_argument("--row", type=int, help="one row's changes (its id)")
    hist.add_argument("--limit", type=int, default=20, help="versions to show (default 20)")
    hist.add_argument("--db-url", help="PostgreSQL DSN (default: $DB_URL)")
    back = cfg_sub.add_parser(
        "rollback", help="restore providers and keys to their state at a version"
    )
    back.add_argument("version", type=int)
    back.add_argument(
        "--restore-revoked-keys",
        action="store_true",
        help="also revive master keys rotated or deleted since that version (default: kept "
        "revoked)",
    )
    back.add_argument("--db-url", help="PostgreSQL DSN (default: $DB_URL)")
