"""What one mock instance is: its options (`MockOptions`), the requests it records (`Recorded`)
and what it remembers (`MockState`: its id counters and bounded stores of responses, files,
batches and vector stores, uploads on disk), each under its `AppKey`."""

from __future__ import annotations

import re
import shutil
import tempfile
from collections import Counter, OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Generic, TypeVar

from aiohttp import web
from multidict import CIMultiDict

from llm_proxy.testing.mock.errors import not_found

_NAME: Final = re.compile(r"[A-Za-z0-9-]{1,40}")
# The quirks of OpenAI-compatible servers a chat stream can have (see `chat_answer`).
QUIRKS: Final = frozenset(
    {"usage-null", "usage-after-finish", "usage-in-finish", "no-done", "merged-chunks", "reasoning"}
)


@dataclass(frozen=True, slots=True)
class MockOptions:
    chunks: int = 20
    delay_ms: float = 0.0
    record: bool = False
    name: str = "mock"  # in every id this instance makes, and in `x-mock-instance`
    speech_bytes: int = 48_000  # size of a `/v1/audio/speech` answer without `mock_bytes`
    max_objects: int = 10_000  # remembered per kind (responses, files, batches, vector stores)
    max_file_bytes: int = 4 << 30  # uploaded bytes kept on disk; the oldest files go first
    # Anthropic's Messages routes (`anthropic`): the x-api-key they require (None: any or none);
    # the tool a Messages answer calls when offered tools ("first", "none" or a tool's name).
    anthropic_key: str | None = None
    tool: str = "first"
    # Every Messages request fails with this status (the first `fail_times` when above 0), in
    # Anthropic's shape: `fail_type` (default: the status's), a `retry-after` header.
    fail_status: int | None = None
    fail_type: str | None = None
    fail_times: int = 0
    retry_after: int | None = None
    error_after: int | None = None  # Messages streams end with `event: error` after N deltas
    # OpenAI chat stream quirks (`QUIRKS`), e.g. {"usage-null", "no-done"}.
    quirks: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        # `_` separates an id's counter, so a name without one keeps the owner readable.
        if not _NAME.fullmatch(self.name):
            raise ValueError(f"mock name {self.name!r}: letters, digits and '-', at most 40")
        if unknown := self.quirks - QUIRKS:
            raise ValueError(f"unknown quirks {sorted(unknown)}; known: {sorted(QUIRKS)}")


@dataclass(frozen=True, slots=True)
class Recorded:
    """One request as the mock received it. A JSON body is kept whole; a multipart body only as
    its size and `form` (the text fields, and per file part its field, filename, size and
    SHA-256); a request without a body has `body == b""`. `query`: the query string, without
    its `?` (Claude Code asks for `/v1/messages?beta=true`)."""

    path: str
    headers: CIMultiDict[str]
    body: bytes
    method: str = "POST"
    size: int = 0
    form: dict[str, Any] | None = None
    query: str = ""


T = TypeVar("T")


class _Objects(Generic[T]):
    """Objects by id, oldest first, at most `limit`: past it the oldest is forgotten (and
    `on_drop` frees what it held, as it does for a deleted one)."""

    def __init__(self, what: str, limit: int, on_drop: Callable[[T], None] | None = None) -> None:
        self.what = what
        self._limit = limit
        self._on_drop = on_drop
        self._items: OrderedDict[str, T] = OrderedDict()

    def __contains__(self, key: object) -> bool:
        return key in self._items

    def __len__(self) -> int:
        return len(self._items)

    def values(self) -> list[T]:
        return list(self._items.values())

    def add(self, key: str, item: T) -> None:
        self._items[key] = item
        while len(self._items) > self._limit:
            self.drop_oldest()

    def get(self, key: str) -> T:
        """The object, or OpenAI's 404."""
        try:
            return self._items[key]
        except KeyError:
            raise not_found(self.what, key) from None

    def delete(self, key: str) -> T:
        item = self.get(key)
        del self._items[key]
        if self._on_drop is not None:
            self._on_drop(item)
        return item

    def drop_oldest(self) -> None:
        _, item = self._items.popitem(last=False)
        if self._on_drop is not None:
            self._on_drop(item)


@dataclass(frozen=True, slots=True)
class StoredResponse:
    response: dict[str, Any]
    input_items: list[dict[str, Any]]


@dataclass(frozen=True, slots=True)
class StoredFile:
    obj: dict[str, Any]
    path: Path
    lines: int  # requests in it, for a batch made from it


@dataclass(frozen=True, slots=True)
class VectorStore:
    obj: dict[str, Any]
    files: dict[str, dict[str, Any]]


class MockState:
    """What one mock instance remembers, each kind bounded: its id counters, the responses,
    files, batches and vector stores it made. Uploaded files live on disk, in a temporary
    directory made on the first upload and removed when the app stops (`close`)."""

    def __init__(self, options: MockOptions) -> None:
        self.name = options.name
        self._max_file_bytes = options.max_file_bytes
        self._counts: Counter[str] = Counter()
        self._dir: Path | None = None
        self.file_bytes = 0
        limit = options.max_objects
        self.responses: _Objects[StoredResponse] = _Objects("response", limit)
        self.files: _Objects[StoredFile] = _Objects("file", limit, self._drop_file)
        self.batches: _Objects[dict[str, Any]] = _Objects("batch", limit)
        self.vector_stores: _Objects[VectorStore] = _Objects("vector store", limit)
        self.uploads: _Objects[dict[str, Any]] = _Objects("upload", limit)
        self.conversations: _Objects[dict[str, Any]] = _Objects("conversation", limit)

    def new_id(self, prefix: str) -> str:
        """`<prefix><name>`, then `<prefix><name>_2`, ...: the first id of a kind is the
        constant the mock has always answered with (`resp_mock`), which byte-exact stream tests
        compare against."""
        self._counts[prefix] += 1
        n = self._counts[prefix]
        return f"{prefix}{self.name}" if n == 1 else f"{prefix}{self.name}_{n}"

    def tally(self, kind: str) -> int:
        """Count one more `kind` (a Messages request, ...); how many so far."""
        self._counts[f"tally:{kind}"] += 1
        return self._counts[f"tally:{kind}"]

    def upload_path(self, file_id: str) -> Path:
        if self._dir is None:
            self._dir = Path(tempfile.mkdtemp(prefix=f"llm-proxy-mock-{self.name}-"))
        return self._dir / file_id

    def add_file(self, stored: StoredFile) -> None:
        self.file_bytes += stored.obj["bytes"]
        self.files.add(stored.obj["id"], stored)
        while self.file_bytes > self._max_file_bytes and len(self.files) > 1:
            self.files.drop_oldest()

    def _drop_file(self, stored: StoredFile) -> None:
        self.file_bytes -= stored.obj["bytes"]
        stored.path.unlink(missing_ok=True)

    def close(self) -> None:
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None


OPTIONS: Final = web.AppKey("mock_options", MockOptions)
RECORDED: Final = web.AppKey("mock_recorded", deque[Recorded])
STATE: Final = web.AppKey("mock_state", MockState)
