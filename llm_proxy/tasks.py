"""Stopping background tasks so that shutdown always ends.

`task.cancel(); await task` hangs for good when the task swallows the cancel and carries on:
on Python 3.11, `asyncio.wait_for` loses a cancel that arrives just as the awaitable it wraps
completes (fixed in 3.12), and a library can do the same. `stop_task` repeats the cancel
until the task has ended, and says so in the log when one was ignored.
"""

from __future__ import annotations

import asyncio
from typing import Any, Final

import structlog

log = structlog.get_logger()

_RECANCEL_SECS: Final = 1.0


async def stop_task(task: asyncio.Task[Any] | None) -> None:
    """Cancel `task` and wait until it has ended (its exception, if any, is not raised: it
    was logged where it happened). The caller's own cancellation still propagates."""
    if task is None:
        return
    ignored = 0
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=_RECANCEL_SECS)
        if not task.done():
            ignored += 1
            if ignored == 1:
                log.warning("task_ignored_cancel", task=task.get_name(), retry_every_secs=1)
    if not task.cancelled():
        task.exception()  # retrieved: asyncio does not report it again when it is collected
