-- Back to openai, azure and anthropic providers. Refused while a gemini, vertex or bedrock
-- provider exists (delete it or change its provider_type first). History rows of cloud
-- providers stay masked: no provider of those types can be rolled back to without them.

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM providers WHERE provider_type IN ('gemini', 'vertex', 'bedrock')) THEN
        RAISE EXCEPTION 'providers with provider_type gemini, vertex or bedrock exist: remove them first'
            USING ERRCODE = 'object_in_use';
    END IF;
END;
$$;

DROP TRIGGER providers_cloud_secrets ON providers;
DROP FUNCTION llm_proxy_record_cloud_secrets();
DROP FUNCTION llm_proxy_keep_cloud_secrets(jsonb);
DROP FUNCTION llm_proxy_restore_params(jsonb);
ALTER FUNCTION llm_proxy_restore_params_009(jsonb) RENAME TO llm_proxy_restore_params;
DROP FUNCTION llm_proxy_restore_cloud_secrets(jsonb);
DROP FUNCTION llm_proxy_history_row(text, jsonb);
ALTER FUNCTION llm_proxy_history_row_009(text, jsonb) RENAME TO llm_proxy_history_row;
DROP FUNCTION llm_proxy_mask_cloud_secrets(jsonb);
DROP FUNCTION llm_proxy_cloud_secret(jsonb, text);
DROP FUNCTION llm_proxy_cloud_secrets();

ALTER TABLE providers DROP CONSTRAINT providers_provider_type_check;
ALTER TABLE providers ADD CONSTRAINT providers_provider_type_check
    CHECK (provider_type IN ('openai', 'azure', 'anthropic'));
