"""The write watches: one timer for every watched response, cutting off only the client whose
write has waited past its timeout, and nothing left behind when responses end."""

from __future__ import annotations

import asyncio
import socket

from llm_proxy.write_watch import TICK_SECS, WriteWatches
from tests.helpers import eventually


async def _transport() -> tuple[asyncio.Transport, socket.socket]:
    ours, theirs = socket.socketpair()
    transport, _ = await asyncio.get_running_loop().create_connection(asyncio.Protocol, sock=ours)
    return transport, theirs


async def test_only_the_stuck_write_is_cut_off_and_the_timer_stops() -> None:
    watches = WriteWatches()
    (stuck_t, a), (flowing_t, b), (idle_t, c) = [await _transport() for _ in range(3)]
    try:
        stuck = watches.watch(stuck_t, 0.3)
        flowing = watches.watch(flowing_t, 0.3)
        idle = watches.watch(idle_t, 0.3)
        assert len(watches) == 3
        stuck.writing()  # never completes
        for _ in range(9):  # writes that complete, 0.1 s apart: never stuck for 0.3 s
            flowing.writing()
            # Real time: the watches fire on the loop's clock, which only real time moves.
            await asyncio.sleep(0.1)
            flowing.written()
        # idle: no write pending at all (a stream between chunks)
        assert stuck.fired and stuck_t.is_closing()
        assert not flowing.fired and not flowing_t.is_closing()
        assert not idle.fired and not idle_t.is_closing()
        assert len(watches) == 2  # the fired one left
        flowing.close()
        idle.close()
        assert len(watches) == 0
        # No timer runs for nothing (past the next tick).
        await eventually(lambda: watches._handle is None, timeout=TICK_SECS * 2)
    finally:
        for transport, sock in ((stuck_t, a), (flowing_t, b), (idle_t, c)):
            transport.close()
            sock.close()
