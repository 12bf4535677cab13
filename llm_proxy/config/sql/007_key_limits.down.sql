-- Drops both settings: every key is confined to its own objects again and has no parallel
-- limit. config_history keeps them in its jsonb rows; a rollback ignores them.
ALTER TABLE credentials
    DROP COLUMN max_parallel_requests,
    DROP COLUMN shared_objects;
