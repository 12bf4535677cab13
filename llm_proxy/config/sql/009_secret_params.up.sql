-- A provider's query_params values (some providers take their key as `?key=`) and the
-- password of its forward proxy (`params.proxy: http://user:password@host:port`) are secrets,
-- like its api_key and headers: they never enter the config history. It shows each query
-- parameter value masked (api-version's as it is: it carries none) and the proxy URL without
-- its user:password@, plus the SHA-256 of each (`query_params_sha256`, `proxy_sha256`, to tell
-- versions apart); the values themselves are kept, unshown, in config_secrets so that a
-- rollback restores them. History rows recorded before this migration are masked in place.

-- A provider row's `params.query_params` when it holds anything to keep secret, else NULL.
CREATE FUNCTION llm_proxy_secret_query(r jsonb) RETURNS jsonb
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN r->'params'->'query_params' IN ('null'::jsonb, '{}'::jsonb) THEN NULL
                ELSE r->'params'->'query_params' END
$$;

-- A provider row's `params.proxy` when it carries user:password@, else NULL.
CREATE FUNCTION llm_proxy_secret_proxy(r jsonb) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN jsonb_typeof(r->'params'->'proxy') = 'string'
                     AND strpos(r->'params'->>'proxy', '@') > 0
                THEN r->'params'->>'proxy' END
$$;

-- A provider row (as migration 006 shows it) with its query_params and proxy masked.
CREATE FUNCTION llm_proxy_mask_params(h jsonb) RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    query jsonb := llm_proxy_secret_query(h);
    proxy text := llm_proxy_secret_proxy(h);
BEGIN
    IF query IS NOT NULL THEN
        h := jsonb_set(
            h,
            '{params,query_params}',
            CASE WHEN jsonb_typeof(query) = 'object' THEN
                (SELECT jsonb_object_agg(
                            k,
                            CASE WHEN lower(k) = 'api-version' THEN v
                                 WHEN jsonb_typeof(v) = 'string'
                                 THEN to_jsonb(llm_proxy_mask(v #>> '{}'))
                                 ELSE '"..."'::jsonb END)
                 FROM jsonb_each(query) AS q(k, v))
            ELSE '"..."'::jsonb END
        ) || jsonb_build_object(
            'query_params_sha256', encode(sha256(convert_to(query::text, 'UTF8')), 'hex'));
    END IF;
    IF proxy IS NOT NULL THEN
        -- As redact_url: everything up to the last @ after the scheme goes.
        h := jsonb_set(
            h, '{params,proxy}', to_jsonb(regexp_replace(proxy, '^([^/]*://).*@', '\1***@'))
        ) || jsonb_build_object('proxy_sha256', encode(sha256(convert_to(proxy, 'UTF8')), 'hex'));
    END IF;
    RETURN h;
END;
$$;

ALTER FUNCTION llm_proxy_history_row(text, jsonb) RENAME TO llm_proxy_history_row_006;

-- A row as the history shows it: no secret in it.
CREATE FUNCTION llm_proxy_history_row(table_name text, r jsonb) RETURNS jsonb
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN table_name = 'providers' AND r IS NOT NULL
                THEN llm_proxy_mask_params(llm_proxy_history_row_006(table_name, r))
                ELSE llm_proxy_history_row_006(table_name, r) END
$$;

-- Keep a provider row's query_params and proxy in config_secrets (as llm_proxy_record_change
-- keeps its api_key and headers).
CREATE FUNCTION llm_proxy_keep_secret_params(r jsonb) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    query text := llm_proxy_secret_query(r)::text;
    proxy text := llm_proxy_secret_proxy(r);
BEGIN
    IF query IS NOT NULL THEN
        INSERT INTO config_secrets (digest, value) VALUES (sha256(convert_to(query, 'UTF8')), query)
        ON CONFLICT (digest) DO NOTHING;
    END IF;
    IF proxy IS NOT NULL THEN
        INSERT INTO config_secrets (digest, value) VALUES (sha256(convert_to(proxy, 'UTF8')), proxy)
        ON CONFLICT (digest) DO NOTHING;
    END IF;
END;
$$;

CREATE FUNCTION llm_proxy_record_secret_params() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM llm_proxy_keep_secret_params(to_jsonb(NEW));
    RETURN NULL;
END;
$$;

CREATE TRIGGER providers_secret_params
    AFTER INSERT OR UPDATE ON providers
    FOR EACH ROW EXECUTE FUNCTION llm_proxy_record_secret_params();

-- A provider row of the history with its query_params and proxy restored from config_secrets.
-- One no longer kept there is marked `headers_missing`, which llm_proxy_rollback refuses.
CREATE FUNCTION llm_proxy_restore_params(r jsonb) RETURNS jsonb
LANGUAGE plpgsql STABLE AS $$
DECLARE
    kept text;
BEGIN
    IF r ? 'query_params_sha256' THEN
        SELECT value INTO kept FROM config_secrets
        WHERE digest = decode(r->>'query_params_sha256', 'hex');
        r := CASE WHEN kept IS NULL THEN r || '{"headers_missing": true}'::jsonb
                  ELSE jsonb_set(r, '{params,query_params}', kept::jsonb) END;
    END IF;
    IF r ? 'proxy_sha256' THEN
        SELECT value INTO kept FROM config_secrets WHERE digest = decode(r->>'proxy_sha256', 'hex');
        r := CASE WHEN kept IS NULL THEN r || '{"headers_missing": true}'::jsonb
                  ELSE jsonb_set(r, '{params,proxy}', to_jsonb(kept)) END;
    END IF;
    RETURN r - 'query_params_sha256' - 'proxy_sha256';
END;
$$;

-- The rows of `table_name` as they were at `target`, secrets restored from config_secrets
-- (migration 006's, with query_params and proxy restored too).
CREATE OR REPLACE FUNCTION llm_proxy_state_at(table_name text, target bigint) RETURNS SETOF jsonb
LANGUAGE sql STABLE AS $$
    SELECT CASE
        WHEN table_name <> 'providers' THEN h.after - 'api_key_sha256'
        ELSE llm_proxy_restore_params((
            CASE
                WHEN (h.after->>'headers_sha256') IS NULL THEN h.after
                WHEN hs.value IS NULL THEN h.after || '{"headers_missing": true}'::jsonb
                ELSE jsonb_set(h.after, '{params,headers}', hs.value::jsonb)
            END - 'api_key_sha256' - 'headers_sha256'
        ) || CASE
            WHEN (h.after->>'api_key_sha256') IS NOT NULL THEN jsonb_build_object('api_key', s.value)
            ELSE '{}'::jsonb
        END)
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

-- What the history recorded before: secrets kept, then masked in place.
SELECT llm_proxy_keep_secret_params(row)
FROM config_history, LATERAL (VALUES (before), (after)) AS v(row)
WHERE table_name = 'providers' AND row IS NOT NULL;
UPDATE config_history
SET before = CASE WHEN before IS NULL THEN NULL ELSE llm_proxy_mask_params(before) END,
    after = CASE WHEN after IS NULL THEN NULL ELSE llm_proxy_mask_params(after) END
WHERE table_name = 'providers';
