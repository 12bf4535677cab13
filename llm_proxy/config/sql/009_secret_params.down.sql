-- Back to the history functions of migration 006, which record query_params and proxy as
-- they are: the history rows masked since get their values back from config_secrets (so that
-- a rollback to them still restores working providers).

UPDATE config_history
SET before = CASE WHEN before IS NULL THEN NULL ELSE llm_proxy_restore_params(before) END,
    after = CASE WHEN after IS NULL THEN NULL ELSE llm_proxy_restore_params(after) END
WHERE table_name = 'providers';

CREATE OR REPLACE FUNCTION llm_proxy_state_at(table_name text, target bigint) RETURNS SETOF jsonb
LANGUAGE sql STABLE AS $$
    SELECT CASE
        WHEN table_name <> 'providers' THEN h.after - 'api_key_sha256'
        ELSE (
            CASE
                WHEN (h.after->>'headers_sha256') IS NULL THEN h.after
                WHEN hs.value IS NULL THEN h.after || '{"headers_missing": true}'::jsonb
                ELSE jsonb_set(h.after, '{params,headers}', hs.value::jsonb)
            END - 'api_key_sha256' - 'headers_sha256'
        ) || CASE
            WHEN (h.after->>'api_key_sha256') IS NOT NULL THEN jsonb_build_object('api_key', s.value)
            ELSE '{}'::jsonb
        END
    END
    FROM (
        SELECT DISTINCT ON (row_id) row_id, operation, after
        FROM config_history
        WHERE config_history.table_name = llm_proxy_state_at.table_name AND version <= target
        ORDER BY row_id, version DESC, id DESC
    ) h
    LEFT JOIN config_secrets s ON s.digest = decode(h.after->>'api_key_sha256', 'hex')
    LEFT JOIN config_secrets hs ON hs.digest = decode(h.after->>'headers_sha256', 'hex')
    WHERE h.operation <> 'DELETE'
$$;
DROP FUNCTION llm_proxy_history_row(text, jsonb);
ALTER FUNCTION llm_proxy_history_row_006(text, jsonb) RENAME TO llm_proxy_history_row;
DROP TRIGGER providers_secret_params ON providers;
DROP FUNCTION llm_proxy_record_secret_params();
DROP FUNCTION llm_proxy_keep_secret_params(jsonb);
DROP FUNCTION llm_proxy_restore_params(jsonb);
DROP FUNCTION llm_proxy_mask_params(jsonb);
DROP FUNCTION llm_proxy_secret_proxy(jsonb);
DROP FUNCTION llm_proxy_secret_query(jsonb);
