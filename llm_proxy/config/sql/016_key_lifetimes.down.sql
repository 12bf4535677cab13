-- Drops the three columns and the last-used times: no key expires any more. config_history
-- keeps them in its jsonb rows; a rollback ignores them.
DROP TABLE key_last_used;
ALTER TABLE credentials
    DROP COLUMN created_by,
    DROP COLUMN metadata,
    DROP COLUMN expires_at;
