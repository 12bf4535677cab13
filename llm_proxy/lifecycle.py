"""The process's serving state, shared by the server loop and the handlers."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class Lifecycle:
    draining: bool = False  # SIGTERM received: /health answers 503, no new connections
    open_connections: int = 0
    rejected_connections: int = 0  # turned away at max_connections
