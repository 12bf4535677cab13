ALTER TABLE request_logs ADD COLUMN request_headers TEXT;
