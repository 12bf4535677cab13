"""Configuration problems: each names the key path and, through a `Locate`, where it came from
(`providers[1].weight (line 14): must be a positive integer`)."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

Path = tuple[str | int, ...]


Locate = Callable[[Path], str | None]


@dataclass(frozen=True, slots=True)
class Issue:
    path: Path
    message: str
    where: str | None = None

    def __str__(self) -> str:
        where = f" ({self.where})" if self.where else ""
        return f"{format_path(self.path)}{where}: {self.message}"


class ConfigError(Exception):
    """The configuration is invalid; `issues` lists every problem found."""

    def __init__(self, issues: list[Issue]) -> None:
        self.issues = issues
        super().__init__("\n".join(str(i) for i in issues))


def format_path(path: Path) -> str:
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        elif re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", part):
            out += f".{part}" if out else part
        else:
            out += f"[{part!r}]"
    return out or "(top level)"
