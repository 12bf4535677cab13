-- The response cache's word on each request (issue 31, docs/decisions/0004): `hit` (answered
-- from the cache, `provider` is then `cache`), `miss` (asked upstream, its answer recorded) or
-- `bypass` (the cache looked and kept out of it: no-store, not cacheable, its backend down).
-- NULL for rows written before, with the cache off, and for requests it never looks at. No
-- CHECK on the values: a batch refused for one row's value would lose the whole batch.
-- The index serves `GET /admin/v1/logs/requests?cache=`; with the cache off it stays empty.

ALTER TABLE request_logs ADD COLUMN cache text;
CREATE INDEX request_logs_cache ON request_logs (cache, ts) WHERE cache IS NOT NULL;
