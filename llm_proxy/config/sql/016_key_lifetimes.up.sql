-- Key lifetimes and descriptions (issue 32), three columns of `credentials`:
-- * expires_at: from this moment on the key is refused (401 `expired_api_key`); NULL: never.
-- * metadata: free JSON (an object, at most 16 KiB written) that the admin API returns and
--   routing rules match (`match: {key_metadata: {...}}`).
-- * created_by: who inserted the row: `admin:<name>` through the admin API, `db:<role>` with
--   plain psql (llm_proxy_actor(), as config_history's changed_by), what the YAML said on an
--   import. Rows older than this migration: NULL (not known).
-- And one table without triggers, so that noting a use is no config change (no history, no
-- NOTIFY): key_last_used, when each key (by hash) was last used, written by every running
-- proxy about once a minute.
--
-- config_history rows recorded before this migration lack the columns; a rollback rebuilds rows
-- with jsonb_populate_record, which would give metadata NULL (refused by NOT NULL), so those
-- rows are given the value every existing key has: {}.

ALTER TABLE credentials
    ADD COLUMN expires_at timestamptz,
    ADD COLUMN metadata jsonb NOT NULL DEFAULT '{}'
        CHECK (jsonb_typeof(metadata) = 'object' AND octet_length(metadata::text) <= 16384),
    ADD COLUMN created_by text CHECK (length(created_by) <= 200);
ALTER TABLE credentials ALTER COLUMN created_by SET DEFAULT llm_proxy_actor();

UPDATE config_history
SET before = CASE WHEN before IS NULL OR before ? 'metadata' THEN before
                  ELSE before || '{"metadata": {}}'::jsonb END,
    after = CASE WHEN after IS NULL OR after ? 'metadata' THEN after
                 ELSE after || '{"metadata": {}}'::jsonb END
WHERE table_name = 'credentials';

CREATE TABLE key_last_used (
    key_hash        bytea PRIMARY KEY CHECK (length(key_hash) = 32),
    last_used_at    timestamptz NOT NULL
);
