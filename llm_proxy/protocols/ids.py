"""Identifiers the translators make up where the upstream gives none (a message id, a tool
call id, a chat completion id): unique enough to tell answers apart, never secrets, so drawn
from `random` (a quarter of a microsecond) rather than `uuid.uuid4()` (two microseconds and a
system call, on every translated answer)."""

from __future__ import annotations

import random


def random_hex(chars: int = 24) -> str:
    """`chars` lower-case hex digits."""
    return f"{random.getrandbits(chars * 4):0{chars}x}"
