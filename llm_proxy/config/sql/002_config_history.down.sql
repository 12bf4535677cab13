DROP FUNCTION llm_proxy_rollback(bigint);
DROP FUNCTION llm_proxy_state_at(text, bigint);
DROP TRIGGER providers_history ON providers;
DROP TRIGGER credentials_history ON credentials;
DROP TRIGGER providers_history_truncate ON providers;
DROP TRIGGER credentials_history_truncate ON credentials;
DROP FUNCTION llm_proxy_record_truncate();
DROP FUNCTION llm_proxy_record_change();
DROP FUNCTION llm_proxy_actor();
DROP FUNCTION llm_proxy_pending_version();
DROP FUNCTION llm_proxy_history_row(text, jsonb);
DROP TABLE config_history_start;
DROP TABLE config_history;
DROP TABLE config_secrets;
ALTER TABLE config_version DROP COLUMN txid;

-- Back to one bump and one NOTIFY per statement.
CREATE OR REPLACE FUNCTION llm_proxy_config_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    v bigint;
BEGIN
    UPDATE config_version SET version = version + 1, changed_at = now() RETURNING version INTO v;
    PERFORM pg_notify('llm_proxy_config', v::text);
    RETURN NULL;
END;
$$;
