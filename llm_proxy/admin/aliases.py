"""The original llm-proxy's admin field names, accepted on input as compatibility aliases and
rewritten to ours before a body is checked (`tables.fields_of`), so scripts written for it keep
working. Each alias means what it meant there (its `python-server/app/api/admin.py`, its
migrations 000001-000004):

- a provider's `provider_key` (its unique name; `id` before its migration 000002 made ids
  numbers) is our `name`; `provider_params` is `params`; `is_enabled` is `enabled`;
- a master key's `credential_key` (the key) is `key`; `is_enabled` is `enabled`;
  `rate_limit` (requests per second, used as the burst too; 0 or null: no limit) is
  `rate_limit_rps` and, unless given, `rate_limit_burst`; its text `id` (the key's identifier
  before that migration, beside its `name`) names the key only when no `name` is given;
- a number `id` is the row's own id, as every answer shows it: accepted back when it is the
  id of the row written (a row read, edited and written back), a 400 otherwise.

An alias and our name both given with different values is a 400 naming both: which one was
meant cannot be guessed. No I/O.
"""

from __future__ import annotations

from typing import Any, Final

from llm_proxy.errors import bad_param

# Alias -> our field, per table (the SQL table's name), renamed as is.
RENAMED: Final[dict[str, dict[str, str]]] = {
    "providers": {
        "provider_key": "name",
        "provider_params": "params",
        "is_enabled": "enabled",
    },
    "credentials": {
        "credential_key": "key",
        "is_enabled": "enabled",
    },
}
# Every alias of a table, with what it stands for (the OpenAPI document shows these).
ALIASES: Final[dict[str, dict[str, str]]] = {
    "providers": {**RENAMED["providers"], "id": "name (a text id) or the row's id (a number)"},
    "credentials": {
        **RENAMED["credentials"],
        "rate_limit": "rate_limit_rps and rate_limit_burst",
        "id": "name when no name is given (a text id) or the row's id (a number)",
    },
}


def uses_original_names(table: str, data: dict[str, Any]) -> bool:
    """Whether a body uses one of the original llm-proxy's field names (a number `id` is
    ours: the row's own)."""
    names = set(RENAMED.get(table, {})) | ({"rate_limit"} if table == "credentials" else set())
    return bool(names & data.keys()) or isinstance(data.get("id"), str)


def _put(out: dict[str, Any], alias: str, ours: str, value: Any) -> None:
    """`out[ours] = value`, unless the body gave `ours` a different value (a 400)."""
    if ours in out and out[ours] != value:
        raise bad_param(
            alias,
            f"`{alias}` (the original llm-proxy's name for `{ours}`) and `{ours}` are both "
            "given, with different values: give one of them.",
        )
    out[ours] = value


def _row_id(value: int, row_id: int | None) -> None:
    """A number `id` in a body: the written row's own id, or a 400."""
    if row_id is None:
        raise bad_param("id", "`id` is assigned by the database: leave it out of a create.")
    if value != row_id:
        raise bad_param(
            "id", f"`id` {value} is not the id of the row written ({row_id}, in the path)."
        )


def _rate_limit(out: dict[str, Any], value: Any) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
        raise bad_param("rate_limit", "`rate_limit` must be an integer (requests per second).")
    if value is not None and value < 0:
        raise bad_param("rate_limit", "`rate_limit` must be 0 (no limit) or more.")
    limit = value or None  # the original read 0 as no limit, as null
    _put(out, "rate_limit", "rate_limit_rps", limit)
    out.setdefault("rate_limit_burst", limit)


def our_names(table: str, data: dict[str, Any], row_id: int | None) -> dict[str, Any]:
    """`data` (a request body for `table`, "providers" or "credentials") with every alias
    replaced by our field; `row_id` is the row written (None: a create). Our own names pass
    through unchanged, unknown ones too (`fields_of` refuses them)."""
    renamed = RENAMED.get(table, {})
    special = {"id", "rate_limit"} if table == "credentials" else {"id"}
    out = {
        name: value for name, value in data.items() if name not in renamed and name not in special
    }
    for alias, ours in renamed.items():
        if alias in data:
            _put(out, alias, ours, data[alias])
    if table == "credentials" and "rate_limit" in data:
        _rate_limit(out, data["rate_limit"])
    if "id" in data:
        value = data["id"]
        if isinstance(value, int) and not isinstance(value, bool):
            _row_id(value, row_id)
        elif isinstance(value, str) and value:
            if table == "providers":
                _put(out, "id", "name", value)
            else:
                out.setdefault("name", value)
        else:
            raise bad_param("id", "`id` must be the row's id (a number) or a name (a string).")
    return out
