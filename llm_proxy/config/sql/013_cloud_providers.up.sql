-- Providers on the clouds: provider_type 'gemini' (Google AI Studio), 'vertex' (Vertex AI) and
-- 'bedrock' (Amazon Bedrock) join the others. Their settings (location, credentials_file,
-- credentials_json, region, aws_access_key_id, aws_secret_access_key, aws_session_token,
-- aws_profile) live in `params`, validated by the proxy like the YAML keys. api_base stays
-- NOT NULL: the admin API writes the type's own when a body gives none; a psql INSERT spells it.
--
-- Four of them are secrets, like api_key: params.credentials_json, aws_access_key_id,
-- aws_secret_access_key and aws_session_token never enter the config history. It shows each
-- masked, plus its SHA-256 (`<name>_sha256`, to tell versions apart); the value itself is kept,
-- unshown, in config_secrets so that a rollback restores it (one no longer kept there marks
-- the row `headers_missing`, which llm_proxy_rollback refuses).

ALTER TABLE providers DROP CONSTRAINT providers_provider_type_check;
ALTER TABLE providers ADD CONSTRAINT providers_provider_type_check
    CHECK (provider_type IN ('openai', 'azure', 'anthropic', 'gemini', 'vertex', 'bedrock'));

-- The secret `params` of the cloud types (config/clouds.py SECRET_CLOUD_FIELDS).
CREATE FUNCTION llm_proxy_cloud_secrets() RETURNS text[]
LANGUAGE sql IMMUTABLE AS $$
    SELECT ARRAY['credentials_json', 'aws_access_key_id', 'aws_secret_access_key',
                 'aws_session_token']
$$;

-- A provider row's secret param `name` (as JSON text, whatever its shape), or NULL.
CREATE FUNCTION llm_proxy_cloud_secret(r jsonb, name text) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN jsonb_typeof(r->'params') = 'object'
                     AND coalesce(r->'params'->name, 'null'::jsonb) <> 'null'::jsonb
                THEN (r->'params'->name)::text END
$$;

-- A provider row (as the history showed it before) with its cloud secrets masked.
CREATE FUNCTION llm_proxy_mask_cloud_secrets(h jsonb) RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    name text;
    secret text;
BEGIN
    FOREACH name IN ARRAY llm_proxy_cloud_secrets() LOOP
        secret := llm_proxy_cloud_secret(h, name);
        IF secret IS NOT NULL THEN
            h := jsonb_set(
                h,
                ARRAY['params', name],
                CASE WHEN jsonb_typeof(h->'params'->name) = 'string'
                     THEN to_jsonb(llm_proxy_mask(h->'params'->>name))
                     ELSE '"..."'::jsonb END
            ) || jsonb_build_object(
                name || '_sha256', encode(sha256(convert_to(secret, 'UTF8')), 'hex'));
        END IF;
    END LOOP;
    RETURN h;
END;
$$;

ALTER FUNCTION llm_proxy_history_row(text, jsonb) RENAME TO llm_proxy_history_row_009;

-- A row as the history shows it: no secret in it.
CREATE FUNCTION llm_proxy_history_row(table_name text, r jsonb) RETURNS jsonb
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN table_name = 'providers' AND r IS NOT NULL
                THEN llm_proxy_mask_cloud_secrets(llm_proxy_history_row_009(table_name, r))
                ELSE llm_proxy_history_row_009(table_name, r) END
$$;

-- Keep a provider row's cloud secrets in config_secrets (as its api_key is kept).
CREATE FUNCTION llm_proxy_keep_cloud_secrets(r jsonb) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    name text;
    secret text;
BEGIN
    FOREACH name IN ARRAY llm_proxy_cloud_secrets() LOOP
        secret := llm_proxy_cloud_secret(r, name);
        IF secret IS NOT NULL THEN
            INSERT INTO config_secrets (digest, value)
            VALUES (sha256(convert_to(secret, 'UTF8')), secret)
            ON CONFLICT (digest) DO NOTHING;
        END IF;
    END LOOP;
END;
$$;

CREATE FUNCTION llm_proxy_record_cloud_secrets() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM llm_proxy_keep_cloud_secrets(to_jsonb(NEW));
    RETURN NULL;
END;
$$;

CREATE TRIGGER providers_cloud_secrets
    AFTER INSERT OR UPDATE ON providers
    FOR EACH ROW EXECUTE FUNCTION llm_proxy_record_cloud_secrets();

-- A provider row of the history with its cloud secrets restored from config_secrets.
CREATE FUNCTION llm_proxy_restore_cloud_secrets(r jsonb) RETURNS jsonb
LANGUAGE plpgsql STABLE AS $$
DECLARE
    name text;
    kept text;
BEGIN
    FOREACH name IN ARRAY llm_proxy_cloud_secrets() LOOP
        IF r ? (name || '_sha256') THEN
            SELECT value INTO kept FROM config_secrets
            WHERE digest = decode(r->>(name || '_sha256'), 'hex');
            r := CASE WHEN kept IS NULL THEN r || '{"headers_missing": true}'::jsonb
                      ELSE jsonb_set(r, ARRAY['params', name], kept::jsonb) END;
            r := r - (name || '_sha256');
        END IF;
    END LOOP;
    RETURN r;
END;
$$;

-- llm_proxy_state_at restores a provider row's secret params through this one.
ALTER FUNCTION llm_proxy_restore_params(jsonb) RENAME TO llm_proxy_restore_params_009;

CREATE FUNCTION llm_proxy_restore_params(r jsonb) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT llm_proxy_restore_cloud_secrets(llm_proxy_restore_params_009(r))
$$;

-- What the history recorded before: secrets kept, then masked in place.
SELECT llm_proxy_keep_cloud_secrets(row)
FROM config_history, LATERAL (VALUES (before), (after)) AS v(row)
WHERE table_name = 'providers' AND row IS NOT NULL;
UPDATE config_history
SET before = CASE WHEN before IS NULL THEN NULL ELSE llm_proxy_mask_cloud_secrets(before) END,
    after = CASE WHEN after IS NULL THEN NULL ELSE llm_proxy_mask_cloud_secrets(after) END
WHERE table_name = 'providers';
