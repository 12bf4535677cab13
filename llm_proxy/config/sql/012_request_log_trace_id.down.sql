DROP INDEX IF EXISTS request_logs_trace_id;
ALTER TABLE request_logs DROP COLUMN trace_id;
