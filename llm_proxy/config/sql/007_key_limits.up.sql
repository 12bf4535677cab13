-- Two per-key settings of the `credentials` table:
-- * shared_objects: an account-wide key that sees every tenant's stored objects (files,
--   batches, responses, ...); false, the default, confines a key to the objects it created.
-- * max_parallel_requests: at most this many of the key's requests in flight at once (NULL:
--   no limit); one more is refused with 429.
--
-- config_history rows recorded before this migration lack both columns. A rollback rebuilds
-- rows with jsonb_populate_record, which would give shared_objects NULL (refused by NOT NULL),
-- so those rows are given the value every existing key has: false. max_parallel_requests
-- restores as NULL, which is what it was.

ALTER TABLE credentials
    ADD COLUMN shared_objects boolean NOT NULL DEFAULT false,
    ADD COLUMN max_parallel_requests integer CHECK (max_parallel_requests > 0);

UPDATE config_history
SET before = CASE WHEN before IS NULL OR before ? 'shared_objects' THEN before
                  ELSE before || '{"shared_objects": false}'::jsonb END,
    after = CASE WHEN after IS NULL OR after ? 'shared_objects' THEN after
                 ELSE after || '{"shared_objects": false}'::jsonb END
WHERE table_name = 'credentials';
