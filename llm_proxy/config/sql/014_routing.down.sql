-- Back to routing from the settings file only: the routing tables and their history go (a
-- rollback cannot reach them any more), and so do the request log's routing columns.

DROP INDEX IF EXISTS request_logs_fallback;
ALTER TABLE request_logs DROP COLUMN rule;
ALTER TABLE request_logs DROP COLUMN fallback_reason;
ALTER TABLE request_logs DROP COLUMN fallback_from;

DROP FUNCTION llm_proxy_rollback(bigint, boolean);
ALTER FUNCTION llm_proxy_rollback_013(bigint, boolean) RENAME TO llm_proxy_rollback;
DROP FUNCTION llm_proxy_restore_rows(text, bigint);

DROP TABLE routing_settings;
DROP TABLE routing_rules;
DROP TABLE model_fallbacks;

DELETE FROM config_history
WHERE table_name IN ('model_fallbacks', 'routing_rules', 'routing_settings');
ALTER TABLE config_history DROP CONSTRAINT config_history_table_name_check;
ALTER TABLE config_history ADD CONSTRAINT config_history_table_name_check
    CHECK (table_name IN ('providers', 'credentials'));
