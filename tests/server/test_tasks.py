"""Shutdown always ends: `stop_task` against a task that swallows its cancel, and the config
listener stopped at the moment a reload is requested (it hung there on Python 3.11)."""

from __future__ import annotations

import asyncio
import contextlib

import pytest
from structlog.testing import capture_logs

from llm_proxy.config.listener import ConfigListener
from llm_proxy.config.model import Config
from llm_proxy.observe.metrics import Metrics
from llm_proxy.proxy.snapshot import ConfigStore, compile_snapshot
from llm_proxy.tasks import stop_task
from tests.helpers import eventually


async def _swallows_one_cancel(started: asyncio.Event) -> None:
    """Catches the first cancel and carries on, as a library (or 3.11's wait_for) can."""
    started.set()
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.sleep(3600)
    await asyncio.sleep(3600)


async def test_a_swallowed_cancel_is_repeated() -> None:
    started = asyncio.Event()
    task = asyncio.create_task(_swallows_one_cancel(started), name="stubborn")
    await started.wait()
    with capture_logs() as logs:
        async with asyncio.timeout(5):
            await stop_task(task)
    assert task.cancelled()
    assert [e["event"] for e in logs] == ["task_ignored_cancel"]
    assert logs[0]["task"] == "stubborn"


async def test_a_task_that_failed_is_stopped_quietly() -> None:
    async def fails() -> None:
        raise RuntimeError("logged where it happened")

    task = asyncio.create_task(fails())
    await eventually(task.done)
    await stop_task(task)  # no exception, and no "never retrieved" warning (warnings: error)
    await stop_task(None)


async def test_the_callers_own_cancel_propagates() -> None:
    started = asyncio.Event()
    stubborn = asyncio.create_task(_swallows_one_cancel(started))
    await started.wait()
    stopper = asyncio.create_task(stop_task(stubborn))
    await eventually(stubborn.cancelling)  # stop_task cancelled it once, and waits
    stopper.cancel()
    with pytest.raises(asyncio.CancelledError):
        await stopper
    stubborn.cancel()  # its second cancel ends it
    with pytest.raises(asyncio.CancelledError):
        await stubborn


async def test_listener_stops_when_a_reload_is_requested_at_once(config_dsn: str) -> None:
    """A config write (or NOTIFY) sets the listener's wake-up event; a SIGTERM at that moment
    cancelled the listener inside `asyncio.wait_for`, which lost the cancel on 3.11: the
    listener polled on and the shutdown waited for it forever."""
    store = ConfigStore(compile_snapshot(Config(), "0"))
    listener = ConfigListener(
        config_dsn,
        Config(),
        serving_version=lambda: store.current.version,
        on_config=lambda config, fetched: store.swap(compile_snapshot(config, fetched.version)),
        on_result=Metrics().config_reload,
        check_interval_secs=30,
    )

    async def start() -> None:
        """Started, connected, and its first check done: it waits for a wake-up."""
        checked = listener.last_check_at
        listener.start()
        await listener.connected.wait()
        await eventually(lambda: listener.last_check_at != checked)

    async with asyncio.timeout(10):
        await start()
        for _ in range(20):
            listener.request_reload()
            await listener.stop()
            await start()
        await listener.stop()
