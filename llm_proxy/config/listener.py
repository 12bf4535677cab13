"""LISTEN/NOTIFY hot reload for database mode.

One dedicated asyncpg connection LISTENs on `llm_proxy_config` (not a pooled one: a pool runs
`UNLISTEN *` on release). The notification callback only sets an event; a single task does the
work: it coalesces a burst of notifications into one reload, reads the whole configuration in
one REPEATABLE READ transaction, validates it and hands it to `on_config` (the wiring compiles
and swaps the snapshot there). An invalid configuration is rejected and the old snapshot keeps
serving; `on_result` hears "ok" or "error" for each reload (the wiring counts them).

Notifications sent while disconnected are lost, so after every (re)connect the listener
compares versions and reloads what it missed; a slow periodic version check is the safety net.
The request path never waits on any of this.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import Any, Final

import asyncpg
import structlog

from llm_proxy.config import database as db
from llm_proxy.config.issues import ConfigError
from llm_proxy.config.model import Config
from llm_proxy.tasks import stop_task

log = structlog.get_logger()

_BACKOFF_MAX: Final = 5.0
# Shows in pg_stat_activity, so operators (and tests) can find the listening backend.
LISTENER_APP_NAME: Final = "llm-proxy-listener"


class ConfigListener:
    def __init__(
        self,
        dsn: str,
        base: Config,
        *,
        serving_version: Callable[[], str],
        on_config: Callable[[Config, db.DbConfig], None],
        on_result: Callable[[str], None],
        check_interval_secs: float = 30.0,
        min_reload_interval_secs: float = 0.025,
    ) -> None:
        self._dsn = dsn
        self._base = base
        # The version being served; `on_config` makes a new one serve (raising ConfigError
        # when it cannot); `on_result` is told "ok" or "error" for every reload.
        self._serving_version = serving_version
        self._on_config = on_config
        self._on_result = on_result
        self._check_interval = check_interval_secs
        self._min_interval = min_reload_interval_secs
        self._wake = asyncio.Event()
        self._lost = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._rejected_version: str | None = None
        self.connected = asyncio.Event()
        self.reloads = 0  # successful swaps made by this listener
        # For /health/detailed (wall-clock times):
        self.last_check_at: float | None = None  # the database was last read
        self.last_error: str | None = None  # why the connection last went away
        self.cache_written_at: float | None = None
        self.cache_error: str | None = None

    @property
    def base(self) -> Config:
        """The settings from the file and environment the rows are combined with (the routing
        section included: it serves while the routing tables are empty)."""
        return self._base

    def status(self) -> dict[str, Any]:
        """The database side of the config, as operators need it at 3 a.m."""
        return {
            "database": db.describe_dsn(self._dsn),
            "listener_connected": self.connected.is_set(),
            "last_check_at": self.last_check_at,
            "last_error": self.last_error,
            "reloads": self.reloads,
            "rejected_version": self._rejected_version,
            "cache": {
                "path": self._base.config_cache_path,
                "written_at": self.cache_written_at,
                "error": self.cache_error,
            }
            if self._base.config_cache_path
            else None,
        }

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="config-listener")

    async def stop(self) -> None:
        await stop_task(self._task)
        self._task = None

    def request_reload(self) -> None:
        """Reload now (SIGHUP in database mode)."""
        self._wake.set()

    # Sync and trivial on purpose: asyncpg runs async callbacks as untracked tasks.
    def _notified(self, *_: Any) -> None:
        self._wake.set()

    def _terminated(self, *_: Any) -> None:
        self._lost.set()
        self._wake.set()

    async def _run(self) -> None:
        delay = 0.1
        where = db.describe_dsn(self._dsn)
        while True:
            conn: asyncpg.Connection | None = None
            try:
                conn = await db.connect(self._dsn, connect_timeout=5, name=LISTENER_APP_NAME)
                self._lost.clear()
                conn.add_termination_listener(self._terminated)
                await conn.add_listener(db.CHANNEL, self._notified)
                self.connected.set()
                log.info("config_listener_connected", database=where)
                delay = 0.1
                await self._serve(conn)
            except asyncio.CancelledError:
                raise
            except (*db.CONNECTION_ERRORS, asyncpg.PostgresError) as exc:
                self.last_error = type(exc).__name__
                log.warning(
                    "config_listener_disconnected",
                    database=where,
                    error=type(exc).__name__,
                    retry_in_secs=delay,
                )
            except Exception:
                # A bug must not end hot reload for good: log it, reconnect, carry on.
                log.exception("config_listener_failed", database=where, retry_in_secs=delay)
            finally:
                self.connected.clear()
                if conn is not None and not conn.is_closed():
                    conn.terminate()
            await asyncio.sleep(delay)
            delay = min(delay * 2, _BACKOFF_MAX)

    async def _serve(self, conn: asyncpg.Connection) -> None:
        # Anything may have changed while we were not listening: check right away.
        self._wake.set()
        last_reload = -self._min_interval
        while not self._lost.is_set():
            # A timeout is the periodic safety-net check. (Not `asyncio.wait_for`: on 3.11 it
            # loses a cancel that arrives as the event fires, and stop() would wait forever.)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._check_interval):
                    await self._wake.wait()
            if self._lost.is_set():
                break
            # A lone change applies at once; a burst gets at most one reload per interval,
            # each reading the latest version (notifications that arrive meanwhile coalesce).
            pause = last_reload + self._min_interval - time.monotonic()
            if pause > 0:
                await asyncio.sleep(pause)
            self._wake.clear()
            await self._reload_if_changed(conn)
            last_reload = time.monotonic()
        raise asyncpg.ConnectionDoesNotExistError("listener connection lost")

    async def _reload_if_changed(self, conn: asyncpg.Connection) -> None:
        version = str(await conn.fetchval("SELECT version FROM config_version"))
        self.last_check_at = time.time()
        if version in (self._serving_version(), self._rejected_version):
            return
        fetched = await db.fetch(conn)
        try:
            self._on_config(db.build_config(self._base, fetched), fetched)
        except ConfigError as exc:
            self._reject(fetched.version, [str(i) for i in exc.issues])
            return
        except Exception as exc:
            # A version that validation let through but compiling cannot take (a bug) is
            # rejected like an invalid one: logged once, the old snapshot keeps serving, and
            # the listener does not reconnect and retry it in a loop.
            log.exception("config_compile_failed", version=fetched.version)
            self._reject(fetched.version, [f"{type(exc).__name__}: {exc}"])
            return
        self._rejected_version = None
        self.reloads += 1
        self._on_result("ok")
        log.info("config_reloaded", version=fetched.version, source="database")
        if self._base.config_cache_path:
            try:
                db.write_cache(self._base.config_cache_path, fetched)
            except OSError as exc:
                self.cache_error = str(exc)
                log.error("config_cache_write_failed", error=str(exc))
            else:
                self.cache_written_at, self.cache_error = time.time(), None

    def _reject(self, version: str, errors: list[str]) -> None:
        self._rejected_version = version
        self._on_result("error")
        log.error(
            "config_reload_rejected",
            version=version,
            serving_version=self._serving_version(),
            errors=errors,
        )
