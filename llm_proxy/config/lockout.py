"""The one line that says a proxy refuses every /v1 request because no master key is enabled,
and how to fix it, for every place that must say so: `check-config`, `import-config`, the
startup and reload log (`authentication_locked`) and `/health/detailed`.

A proxy that requires authentication and has no enabled key stays locked (it never opens up):
after an operator revokes every key during an incident, or points a new proxy at a database
whose `credentials` table is empty, refusing is the safe reading. Saying so once, with the
fix, is what keeps the safe reading from looking like an outage.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from llm_proxy.config.model import Config, MasterKey

FIX_IN_FILE: Final = "under master_keys in the config file (- {name: main, key: <a random key>})"
FIX_IN_DATABASE: Final = (
    "INSERT INTO credentials (name, key) VALUES ('main', '<a random key>'), or "
    'POST /admin/v1/credentials {"name": "main"} (the key is generated and shown once)'
)
AUTH_OFF_FIX: Final = "or set require_auth: false to serve without authentication"


def locked_line(keys: Sequence[MasterKey], *, database: bool | None) -> str:
    """What a locked proxy says: its state, then the fix for its mode (database mode, YAML
    mode, or both when the caller does not know)."""
    return _line(sum(1 for k in keys if not k.enabled), database)


def locked_rows(enabled: int, disabled: int) -> str | None:
    """The line for a database whose `credentials` table holds `enabled` and `disabled` keys
    (what `import-config` just wrote), when it locks a proxy requiring authentication."""
    return None if enabled else _line(disabled, True)


def _line(disabled: int, database: bool | None) -> str:
    state = f"no enabled master key ({disabled} disabled)" if disabled else "no master keys"
    add = "add or re-enable one" if disabled else "add one"
    if database is None:
        fix = f"{FIX_IN_FILE}, or in database mode {FIX_IN_DATABASE}"
    else:
        fix = FIX_IN_DATABASE if database else FIX_IN_FILE
    return f"{state}: every /v1 request is refused (401) until you {add}: {fix}; {AUTH_OFF_FIX}"


def locked_warning(config: Config, *, database: bool) -> str | None:
    """The line for `config` when it locks the proxy (authentication required, no enabled
    master key), else None. `database`: the keys live in the database (database mode, or a
    config just imported into one), which decides the fix given."""
    if not config.require_auth or any(k.enabled for k in config.master_keys):
        return None
    return locked_line(config.master_keys, database=database)
