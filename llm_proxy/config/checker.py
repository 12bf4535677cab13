"""`Checker`: reads values while collecting every problem (one pass reports them all)."""

from __future__ import annotations

import contextlib
import math
import re
from collections.abc import Mapping
from typing import Any, Final, TypeVar

from llm_proxy.config.issues import Issue, Locate, Path

# Provider and master-key names: metric labels and log fields. The SQL schema's rule
# (`^[^[:cntrl:]]{1,128}$`): no C0/C1 control characters, no DEL.
NAME_RE: Final = re.compile(r"^[^\x00-\x1f\x7f-\x9f]{1,128}$")


# Upper bounds that keep every number usable downstream (timers, byte counts, the SQL
# schema's `integer` columns): beyond them a value is a typo, not a setting.
MAX_INT: Final = 2**31 - 1


MAX_NUMBER: Final = 1e9


class Interpolated(str):
    """A string produced by `${VAR}` interpolation; numeric and boolean fields accept it when
    it spells a number or boolean (environment variables are always strings)."""

    __slots__ = ()


T = TypeVar("T")


class Checker:
    """Collects issues while reading values; every getter returns a usable default on error so
    that one pass reports all problems."""

    def __init__(self, locate: Locate | None) -> None:
        self.issues: list[Issue] = []
        self._locate = locate

    def fail(self, path: Path, message: str) -> None:
        self.issues.append(Issue(path, message, self._locate(path) if self._locate else None))

    def mapping(
        self, value: Any, path: Path, allowed: frozenset[str] | None
    ) -> Mapping[str, Any] | None:
        if not isinstance(value, Mapping):
            self.fail(path, f"must be a mapping, got {kind_of(value)}")
            return None
        for key in value:
            if not isinstance(key, str):
                self.fail(path, f"keys must be strings, got {kind_of(key)} {key!r}")
            elif allowed is not None and key not in allowed:
                self.fail((*path, key), f"unknown key (allowed: {', '.join(sorted(allowed))})")
        return value

    def string(self, value: Any, path: Path, *, empty_ok: bool = False) -> str:
        if not isinstance(value, str):
            self.fail(path, f"must be a string, got {kind_of(value)}")
            return ""
        if not empty_ok and not value.strip():
            self.fail(path, "must not be empty")
        return str(value)

    def boolean(self, value: Any, path: Path) -> bool:
        if isinstance(value, Interpolated):
            parsed = parse_bool(value)
            if parsed is not None:
                return parsed
        if not isinstance(value, bool):
            self.fail(path, f"must be true or false, got {kind_of(value)}")
            return False
        return value

    def positive_int(self, value: Any, path: Path) -> int:
        if isinstance(value, Interpolated) and value.strip().isdigit():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            self.fail(path, f"must be a positive integer, got {value!r}")
            return 1
        if value > MAX_INT:
            self.fail(path, f"must be at most {MAX_INT}, got {value}")
            return 1
        return value

    def positive_number(self, value: Any, path: Path) -> float:
        if isinstance(value, Interpolated):
            with contextlib.suppress(ValueError):
                value = float(value)
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.fail(path, f"must be a positive number, got {value!r}")
            return 1.0
        # YAML `.inf`/`.nan`, JSON's 1e999, `${VAR}` = "Infinity": refused here, once, so
        # that nothing downstream (timers, rate conversions) ever sees them.
        if isinstance(value, float) and not math.isfinite(value):
            self.fail(path, f"must be a finite positive number, got {value!r}")
            return 1.0
        if not value > 0:
            self.fail(path, f"must be a positive number, got {value!r}")
            return 1.0
        if value > MAX_NUMBER:
            self.fail(path, f"must be at most {MAX_NUMBER:g}, got {value:g}")
            return 1.0
        return float(value)

    def non_negative_number(self, value: Any, path: Path) -> float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            if value == 0:
                return 0.0
            if value < 0:
                self.fail(path, f"must be zero or a positive number, got {value!r}")
                return 0.0
        return self.positive_number(value, path)

    def header_secret(self, value: Any, path: Path) -> str | None:
        """A secret sent or compared as a header value; empty means unset. Never echoed."""
        text = self.string(value, path, empty_ok=True)
        if text and not header_safe(text):
            self.fail(path, "must be printable ASCII without spaces")
        return text or None

    def name(self, value: Any, path: Path) -> str:
        text = self.string(value, path)
        if text.strip() and not NAME_RE.match(text):
            self.fail(path, "must be 1-128 printable characters")
        return text

    def port(self, value: Any, path: Path) -> int:
        port = self.positive_int(value, path)
        if port > 65535:
            self.fail(path, f"must be a port number 1-65535, got {port}")
        return port

    def sequence(self, value: Any, path: Path) -> list[Any]:
        if not isinstance(value, list | tuple):
            self.fail(path, f"must be a list, got {kind_of(value)}")
            return []
        return list(value)

    def required(self, data: Mapping[str, Any], path: Path, *keys: str) -> None:
        """Each of `keys` must be given."""
        for key in keys:
            if data.get(key) is None:
                self.fail((*path, key), "is required")

    def unique_name(self, data: Mapping[str, Any], path: Path, seen: set[str], what: str) -> str:
        """The entry's `name` ("" when missing: `required` reports that), not in `seen`
        (which it joins)."""
        name = self.name(data["name"], (*path, "name")) if data.get("name") is not None else ""
        if name in seen:
            self.fail((*path, "name"), f"duplicate {what} name {name!r}")
        seen.add(name)
        return name

    def optional(self, data: Mapping[str, Any], key: str, default: T) -> Any:
        value = data.get(key)
        return default if value is None else value


def kind_of(value: Any) -> str:
    if value is None:
        return "null"
    return {
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        str: "a string",
        Interpolated: "a string",
    }.get(
        type(value),
        "a mapping"
        if isinstance(value, Mapping)
        else "a list"
        if isinstance(value, list | tuple)
        else type(value).__name__,
    )


def header_safe(text: str) -> bool:
    """Sendable as a header value as is: printable ASCII, no spaces, no CR/LF."""
    return text.isascii() and text.isprintable() and " " not in text


def parse_bool(text: str) -> bool | None:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    return None
