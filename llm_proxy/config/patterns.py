"""Model-name patterns, shared by `model_mapping` keys and `allowed_models` entries.

A name is one of three kinds, decided once when the config is compiled:

* **exact**: no `*` and no regex metacharacter other than `.` (model names have dots:
  `gpt-3.5-turbo` is an exact name, not a regex).
* **wildcard**: contains `*` and no other regex metacharacter; `*` (or `.*`) means "anything",
  every other character is literal: `gemini-*`, `claude-opus-4-5-.*`.
* **regex**: any other metacharacter (`^$+?()[]{}|\\`) makes it a Python regex.

Wildcards and regexes are matched against the whole name (`fullmatch`).
"""

from __future__ import annotations

import re
from typing import Final

_REGEX_CHARS: Final = frozenset("^$+?()[]{}|\\")


def compile_pattern(text: str) -> re.Pattern[str] | None:
    """Return the compiled pattern for `text`, or None when `text` is an exact name.

    Raises `re.error` for a regex that does not compile.
    """
    if any(c in _REGEX_CHARS for c in text):
        return re.compile(text)
    if "*" in text:
        parts = text.replace(".*", "*").split("*")
        return re.compile(".*".join(re.escape(p) for p in parts))
    return None


class NameMatcher:
    """Answers "is this model name in the list?" for exact names and patterns."""

    __slots__ = ("_cache", "_exact", "_patterns")

    _CACHE_MAX: Final = 4096

    def __init__(self, entries: tuple[str, ...]) -> None:
        self._exact = frozenset(e for e in entries if compile_pattern(e) is None)
        self._patterns = tuple(p for e in entries if (p := compile_pattern(e)) is not None)
        self._cache: dict[str, bool] = {}  # names that matched a pattern

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        if name in self._exact:
            return True
        if name in self._cache:
            return True
        hit = any(p.fullmatch(name) for p in self._patterns)
        if hit:  # misses are not cached: random names cost no memory
            if len(self._cache) >= self._CACHE_MAX:
                self._cache.clear()
            self._cache[name] = True
        return hit

    @property
    def exact(self) -> frozenset[str]:
        return self._exact
