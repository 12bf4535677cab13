-- The W3C trace id of each request (the client's traceparent's, or the one the proxy started
-- with tracing on): a request log row leads to its trace in Tempo, Jaeger or Langfuse, and a
-- trace to its row. NULL for rows written before, and with tracing off when the client sent
-- no traceparent. The index serves `GET /admin/v1/logs/requests?trace_id=`.

ALTER TABLE request_logs ADD COLUMN trace_id text;
CREATE INDEX request_logs_trace_id ON request_logs (trace_id) WHERE trace_id IS NOT NULL;
