""".env files: `NAME=value` lines, read the way the original llm-proxy's python-dotenv reads
them, except that a line it cannot read is an error naming the file and the line (python-dotenv
skips it with a warning, so a typo silently unsets a variable).

Two files are read, for two jobs:

* the working directory's `.env`, at the start of every command (`load_into_environment`):
  each variable it names that the process environment does not already have is set, so that
  everything the proxy reads from the environment (`DB_URL`, `ADMIN_KEY`, `LANGFUSE_*`,
  `LOG_FORMAT`, ...) can come from it, as in the original (`load_dotenv()` at import);
* the `.env` beside the config file, read with the file (`read_dotenv`) for its `${VAR}`
  references and overrides, below the process environment (which by then includes the working
  directory's `.env`).

A line is `NAME=value`, optionally after `export `; blank lines and `#` comments are skipped.
Values may be 'single-quoted' (literal), "double-quoted" (`\\n`, `\\t`, `\\"` and `\\\\`
escapes) or bare (a ` #` starts a comment). `${NAME}` and `${NAME:-default}` in bare and
double-quoted values are replaced by the variable's value (the environment's, else an earlier
line's), as python-dotenv does. A value never appears in an error: `.env` files hold secrets.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from llm_proxy.config.issues import ConfigError, Issue

DOTENV_NAME: Final = ".env"
_NAME_RE: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_REFERENCE_RE: Final = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_ESCAPES: Final = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\", "$": "$"}


class DotenvError(ConfigError):
    """A `.env` line that cannot be read: `str()` is `FILE line N: what is wrong` (never the
    line's value). A ConfigError, so that whatever reports a bad config file (check-config, a
    SIGHUP reload) reports a bad `.env` beside it too."""

    def __init__(self, source: str, line: int, problem: str) -> None:
        super().__init__([Issue((), problem, f"{source} line {line}")])
        self.source = source
        self.line = line
        self.problem = problem

    def __str__(self) -> str:
        return f"{self.source} line {self.line}: {self.problem}"


def parse_dotenv(
    text: str, source: str = DOTENV_NAME, environ: Mapping[str, str] | None = None
) -> dict[str, str]:
    """Every `NAME=value` of `text`, in order. `${NAME}` references resolve against `environ`
    first, then the lines above. Raises DotenvError for the first line it cannot read."""
    environ = {} if environ is None else environ
    values: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith(("export ", "export\t")):
            line = line[len("export") :].strip()
        name, sep, rest = line.partition("=")
        name = name.strip()
        if not sep:
            raise DotenvError(source, number, "expected NAME=value (no `=` on this line)")
        if not _NAME_RE.fullmatch(name):
            raise DotenvError(
                source, number, "expected NAME=value, NAME made of letters, digits and _"
            )
        value, expand = _value(rest.strip(), source, number)
        if expand:
            value = _expand(value, environ, values)
        values[name] = value
    return values


def _value(text: str, source: str, number: int) -> tuple[str, bool]:
    """The value written as `text`, and whether `${...}` references in it are expanded."""
    if not text or text[0] not in "'\"":
        comment = re.search(r"\s#", text)
        return (text[: comment.start()] if comment else text).rstrip(), True
    quote = text[0]
    out: list[str] = []
    i = 1
    while i < len(text):
        char = text[i]
        if char == "\\" and quote == '"' and i + 1 < len(text):
            escaped = text[i + 1]
            out.append(_ESCAPES.get(escaped, "\\" + escaped))
            i += 2
            continue
        if char == quote:
            after = text[i + 1 :].strip()
            if after and not after.startswith("#"):
                raise DotenvError(source, number, f"unexpected text after the closing {quote}")
            return "".join(out), quote == '"'
        out.append(char)
        i += 1
    raise DotenvError(
        source, number, f"the {quote} that opens the value is not closed on this line"
    )


def _expand(value: str, environ: Mapping[str, str], earlier: Mapping[str, str]) -> str:
    def substitute(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        # As python-dotenv: a variable set to "" is "", not the default.
        found = environ[name] if name in environ else earlier.get(name)
        if found is not None:
            return found
        return default or ""

    return _REFERENCE_RE.sub(substitute, value)


def read_dotenv(directory: Path, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The variables of `directory/.env` ({} when there is none). Raises DotenvError, or
    OSError when it exists but cannot be read."""
    path = directory / DOTENV_NAME
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return {}
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise DotenvError(str(path), line, "not UTF-8 text") from None
    return parse_dotenv(text, str(path), environ)


@dataclass(slots=True)
class _Loaded:
    """What `load_into_environment` did to the process environment: a fact about the process,
    like `os.environ` itself, kept so that a reload can tell the variables the process was
    given from those it took from the file."""

    directory: Path | None = None
    names: frozenset[str] = frozenset()


_LOADED: Final = _Loaded()


def load_into_environment(
    directory: Path | None = None, environ: MutableMapping[str, str] | None = None
) -> list[str]:
    """Set each variable of `directory/.env` (default: the working directory) that `environ`
    (default: `os.environ`) does not have yet: the process environment wins, as with
    python-dotenv's `load_dotenv()`. Returns the names set. Raises DotenvError or OSError."""
    into_process = environ is None
    environ = os.environ if environ is None else environ
    directory = (Path.cwd() if directory is None else directory).absolute()
    found = read_dotenv(directory, environ)
    added = [name for name in found if name not in environ]
    for name in added:
        environ[name] = found[name]
    if into_process:
        _LOADED.directory, _LOADED.names = directory, frozenset(added)
    return added


def current_environment() -> dict[str, str]:
    """The process environment with the working directory's `.env` read again, for a reload:
    the variables that came from it take the file's current values (or are gone with their
    line); the variables the process was given still win. Raises DotenvError or OSError."""
    given = {k: v for k, v in os.environ.items() if k not in _LOADED.names}
    if _LOADED.directory is None:
        return given
    return {**read_dotenv(_LOADED.directory, given), **given}
