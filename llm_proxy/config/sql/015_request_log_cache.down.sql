DROP INDEX IF EXISTS request_logs_cache;
ALTER TABLE request_logs DROP COLUMN cache;
