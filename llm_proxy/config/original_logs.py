"""`import-config --from-original-db DSN --with-logs`: the original llm-proxy's `request_logs`
and `error_logs` copied into ours, newest first, at most `limit` rows of each, `batch` rows per
INSERT. A row already here (same request id and time) is not copied again, so a second run
adds nothing; `usage_daily` (what /usage answers from) is raised by exactly the rows added, in
the same statement, as the proxy's own writer does.

Column mapping (theirs -> ours):

* request_logs: timestamp -> ts, request_id, credential_name -> key_name, endpoint -> path,
  model_requested -> model, model_mapped -> model_sent, provider_name -> provider,
  status_code -> status, total_duration_ms -> duration_ms, ttft_ms, input_tokens ->
  prompt_tokens, output_tokens -> completion_tokens, is_streaming -> streamed,
  error_category -> error_code, request_body -> prompt, response_body -> completion. The
  method is POST (the original logged only its POST endpoints), the client family `other`
  (it did not record one), no team (it had none). Dropped: provider_type, client_protocol,
  provider_protocol, total_tokens (the sum of the two), error_message, request_headers (they
  may hold keys).
* error_logs: timestamp -> ts, request_id, provider_name -> provider, error_category ->
  outcome, response_status_code (else error_code) -> upstream_status, response_body -> body,
  error_message -> detail. Dropped: the request's and the provider request's headers and
  bodies, endpoint, protocols, provider_api_base, mapped_model, total_duration_ms,
  credential_name, client, is_streaming.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final

import asyncpg

DEFAULT_LIMIT: Final = 100_000
DEFAULT_BATCH: Final = 1000

_READ_REQUESTS: Final = """
SELECT id, timestamp, request_id, coalesce(credential_name, '') AS key_name,
       coalesce(endpoint, '') AS path, model_requested, model_mapped,
       coalesce(provider_name, '') AS provider, coalesce(status_code, 0) AS status,
       coalesce(total_duration_ms, 0)::real AS duration_ms, ttft_ms::real AS ttft_ms,
       input_tokens, output_tokens,
       coalesce(is_streaming, false) AS streamed, error_category, request_body, response_body
FROM request_logs
WHERE ($1::timestamptz IS NULL OR (timestamp, id) < ($1, $2))
ORDER BY timestamp DESC, id DESC LIMIT $3
"""
_READ_ERRORS: Final = """
SELECT id, timestamp, request_id, coalesce(provider_name, '') AS provider,
       error_category AS outcome, coalesce(response_status_code, error_code) AS upstream_status,
       response_body::text AS body, error_message AS detail
FROM error_logs
WHERE ($1::timestamptz IS NULL OR (timestamp, id) < ($1, $2))
ORDER BY timestamp DESC, id DESC LIMIT $3
"""
_WRITE_REQUESTS: Final = """
WITH incoming AS (
    SELECT * FROM unnest($1::timestamptz[], $2::text[], $3::text[], $4::text[], $5::text[],
                         $6::text[], $7::text[], $8::smallint[], $9::real[], $10::real[],
                         $11::integer[], $12::integer[], $13::boolean[], $14::text[],
                         $15::text[], $16::text[])
        AS t(ts, request_id, key_name, path, model, model_sent, provider, status, duration_ms,
             ttft_ms, prompt_tokens, completion_tokens, streamed, error_code, prompt,
             completion)
), added AS (
    INSERT INTO request_logs
        (ts, request_id, key_name, client, method, path, model, model_sent, provider, status,
         duration_ms, ttft_ms, prompt_tokens, completion_tokens, streamed, error_code, prompt,
         completion)
    SELECT ts, request_id, key_name, 'other', 'POST', path, model, model_sent, provider, status,
           duration_ms, ttft_ms, prompt_tokens, completion_tokens, streamed, error_code, prompt,
           completion
    FROM incoming i
    WHERE NOT EXISTS (
        SELECT 1 FROM request_logs r WHERE r.request_id = i.request_id AND r.ts = i.ts)
    RETURNING ts, key_name, model, provider, status, prompt_tokens, completion_tokens
), usage AS (
    INSERT INTO usage_daily AS u
        (day, key_name, model, provider, requests, errors, prompt_tokens, completion_tokens,
         cost_usd)
    SELECT (ts AT TIME ZONE 'UTC')::date, key_name, coalesce(model, ''), provider, count(*),
           count(*) FILTER (WHERE status >= 400), coalesce(sum(prompt_tokens), 0),
           coalesce(sum(completion_tokens), 0), 0
    FROM added GROUP BY 1, 2, 3, 4
    ON CONFLICT (day, key_name, team, model, provider) DO UPDATE SET
        requests = u.requests + EXCLUDED.requests,
        errors = u.errors + EXCLUDED.errors,
        prompt_tokens = u.prompt_tokens + EXCLUDED.prompt_tokens,
        completion_tokens = u.completion_tokens + EXCLUDED.completion_tokens
)
SELECT count(*) FROM added
"""
_WRITE_ERRORS: Final = """
WITH incoming AS (
    SELECT * FROM unnest($1::timestamptz[], $2::text[], $3::text[], $4::text[],
                         $5::smallint[], $6::text[], $7::text[])
        AS t(ts, request_id, provider, outcome, upstream_status, body, detail)
), added AS (
    INSERT INTO error_logs (ts, request_id, provider, outcome, upstream_status, body, detail)
    SELECT * FROM incoming i
    WHERE NOT EXISTS (
        SELECT 1 FROM error_logs e
        WHERE e.request_id = i.request_id AND e.ts = i.ts AND e.outcome = i.outcome)
    RETURNING 1
)
SELECT count(*) FROM added
"""
_REQUEST_FIELDS: Final = (
    "timestamp",
    "request_id",
    "key_name",
    "path",
    "model_requested",
    "model_mapped",
    "provider",
    "status",
    "duration_ms",
    "ttft_ms",
    "input_tokens",
    "output_tokens",
    "streamed",
    "error_category",
    "request_body",
    "response_body",
)
_ERROR_FIELDS: Final = (
    "timestamp",
    "request_id",
    "provider",
    "outcome",
    "upstream_status",
    "body",
    "detail",
)


@dataclass(frozen=True, slots=True)
class LogsCopied:
    """Rows read from the original and rows added here (fewer: those already here)."""

    requests_read: int
    requests_added: int
    errors_read: int
    errors_added: int


async def copy_logs(
    source: asyncpg.Connection,
    target: asyncpg.Connection,
    *,
    limit: int = DEFAULT_LIMIT,
    batch: int = DEFAULT_BATCH,
) -> LogsCopied:
    """Copy the newest `limit` request logs and error logs of `source` (the original's
    database) into `target` (ours), `batch` rows per statement; each batch commits alone, so
    an interrupted copy keeps what it wrote and a rerun completes it."""
    requests_read = requests_added = errors_read = errors_added = 0
    # Each table only when its migration ran there (000005 and 000007).
    if await _has_table(source, "request_logs"):
        async for rows in _newest(source, _READ_REQUESTS, limit, batch):
            requests_read += len(rows)
            requests_added += await _write(target, _WRITE_REQUESTS, rows, _REQUEST_FIELDS)
    if await _has_table(source, "error_logs"):
        async for rows in _newest(source, _READ_ERRORS, limit, batch):
            errors_read += len(rows)
            errors_added += await _write(target, _WRITE_ERRORS, rows, _ERROR_FIELDS)
    return LogsCopied(requests_read, requests_added, errors_read, errors_added)


async def _has_table(conn: asyncpg.Connection, name: str) -> bool:
    return bool(await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", name))


async def _newest(
    conn: asyncpg.Connection, query: str, limit: int, batch: int
) -> AsyncIterator[list[asyncpg.Record]]:
    """The rows of `query`, newest first, `batch` at a time, `limit` in all (keyset paging:
    each page starts below the last (timestamp, id) of the previous one)."""
    last: tuple[datetime | None, int | None] = (None, None)
    left = limit
    while left > 0:
        rows = list(await conn.fetch(query, last[0], last[1], min(batch, left)))
        if not rows:
            return
        yield rows
        left -= len(rows)
        last = (rows[-1]["timestamp"], rows[-1]["id"])


async def _write(
    conn: asyncpg.Connection,
    statement: str,
    rows: Sequence[asyncpg.Record],
    fields: Sequence[str],
) -> int:
    """One batch, as columns (the statements unnest them): the rows added."""
    columns = [[r[f] for r in rows] for f in fields]
    return int(await conn.fetchval(statement, *columns))
