-- Providers that are not plain OpenAI: provider_type 'azure' joins 'openai'. The options auth,
-- headers and query_params live in `params` (validated by the proxy like the YAML keys).
--
-- A provider's headers may carry secrets (a second key, a gateway token): like api_key, they
-- never enter the config history. It shows every header value masked, plus the SHA-256 of the
-- whole `headers` object (`headers_sha256`, to tell versions apart); the object itself is kept,
-- unshown, in config_secrets so that a rollback restores it.

ALTER TABLE providers DROP CONSTRAINT providers_provider_type_check;
ALTER TABLE providers ADD CONSTRAINT providers_provider_type_check
    CHECK (provider_type IN ('openai', 'azure'));

-- `sk-...abcd`: as the admin API masks a provider key.
CREATE FUNCTION llm_proxy_mask(secret text) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN coalesce(secret, '') = '' THEN ''
                WHEN length(secret) <= 8 THEN '...'
                ELSE left(secret, 3) || '...' || right(secret, 4) END
$$;

-- A provider row's `params.headers` when it holds anything to keep secret, else NULL.
CREATE FUNCTION llm_proxy_secret_headers(r jsonb) RETURNS jsonb
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN r->'params'->'headers' IN ('null'::jsonb, '{}'::jsonb) THEN NULL
                ELSE r->'params'->'headers' END
$$;

-- A row as the history shows it: no secret in it.
CREATE OR REPLACE FUNCTION llm_proxy_history_row(table_name text, r jsonb) RETURNS jsonb
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE
        WHEN r IS NULL THEN NULL
        WHEN table_name = 'providers' THEN
            CASE
                WHEN llm_proxy_secret_headers(r) IS NULL THEN r - 'api_key'
                ELSE jsonb_set(
                    r - 'api_key',
                    '{params,headers}',
                    CASE WHEN jsonb_typeof(r->'params'->'headers') = 'object' THEN
                        (SELECT jsonb_object_agg(
                                    k,
                                    CASE WHEN jsonb_typeof(v) = 'string'
                                         THEN to_jsonb(llm_proxy_mask(v #>> '{}'))
                                         ELSE '"..."'::jsonb END)
                         FROM jsonb_each(r->'params'->'headers') AS h(k, v))
                    ELSE '"..."'::jsonb END
                ) || jsonb_build_object(
                    'headers_sha256',
                    encode(sha256(convert_to(llm_proxy_secret_headers(r)::text, 'UTF8')), 'hex'))
            END || jsonb_build_object(
                'api_key', llm_proxy_mask(r->>'api_key'),
                'api_key_sha256',
                CASE WHEN coalesce(r->>'api_key', '') = '' THEN NULL
                     ELSE encode(sha256(convert_to(r->>'api_key', 'UTF8')), 'hex') END)
        ELSE r - 'key'
    END
$$;

CREATE OR REPLACE FUNCTION llm_proxy_record_change() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    old_row jsonb;
    new_row jsonb;
BEGIN
    IF TG_OP <> 'INSERT' THEN
        old_row := to_jsonb(OLD);
    END IF;
    IF TG_OP <> 'DELETE' THEN
        new_row := to_jsonb(NEW);
        IF TG_TABLE_NAME = 'providers' AND coalesce(new_row->>'api_key', '') <> '' THEN
            INSERT INTO config_secrets (digest, value)
            VALUES (sha256(convert_to(new_row->>'api_key', 'UTF8')), new_row->>'api_key')
            ON CONFLICT (digest) DO NOTHING;
        END IF;
        IF TG_TABLE_NAME = 'providers' AND llm_proxy_secret_headers(new_row) IS NOT NULL THEN
            INSERT INTO config_secrets (digest, value)
            VALUES (sha256(convert_to(llm_proxy_secret_headers(new_row)::text, 'UTF8')),
                    llm_proxy_secret_headers(new_row)::text)
            ON CONFLICT (digest) DO NOTHING;
        END IF;
    END IF;
    -- An UPDATE that changes nothing but the timestamp is no change.
    IF TG_OP = 'UPDATE' AND (old_row - 'updated_at') = (new_row - 'updated_at') THEN
        RETURN NULL;
    END IF;
    INSERT INTO config_history (version, table_name, row_id, operation, before, after, changed_by)
    VALUES (
        llm_proxy_pending_version(), TG_TABLE_NAME,
        coalesce((new_row->>'id')::bigint, (old_row->>'id')::bigint), TG_OP,
        llm_proxy_history_row(TG_TABLE_NAME, old_row),
        llm_proxy_history_row(TG_TABLE_NAME, new_row),
        llm_proxy_actor()
    );
    RETURN NULL;
END;
$$;

-- The rows of `table_name` as they were at `target`, secrets restored from config_secrets (a
-- provider whose headers are no longer kept there is marked `headers_missing`).
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

CREATE OR REPLACE FUNCTION llm_proxy_rollback(target bigint) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    current bigint;
    first bigint;
    tbl text;
    missing bigint;
BEGIN
    SELECT version INTO current FROM config_version FOR UPDATE;
    SELECT version INTO first FROM config_history_start;
    IF target < first OR target > current THEN
        RAISE EXCEPTION 'config version % is not in the history (it holds versions % to %)',
            target, first, current USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF target = current THEN
        RETURN current;
    END IF;
    SELECT count(*) INTO missing
    FROM llm_proxy_state_at('providers', target) r
    WHERE (r->>'api_key') IS NULL OR r ? 'headers_missing';
    IF missing > 0 THEN
        RAISE EXCEPTION 'config version %: % provider key(s) or headers no longer in config_secrets',
            target, missing USING ERRCODE = 'invalid_parameter_value';
    END IF;
    FOREACH tbl IN ARRAY ARRAY['providers', 'credentials'] LOOP
        EXECUTE format(
            'CREATE TEMP TABLE llm_proxy_target ON COMMIT DROP AS '
            'SELECT (jsonb_populate_record(NULL::%I, r)).* FROM llm_proxy_state_at(%L, $1) r',
            tbl, tbl) USING target;
        -- Gone, or different in anything but the timestamp: deleted (and re-inserted below).
        EXECUTE format(
            'DELETE FROM %I t WHERE NOT EXISTS (SELECT 1 FROM llm_proxy_target g WHERE '
            '(to_jsonb(g) - ''updated_at'') = (to_jsonb(t) - ''updated_at''))', tbl);
        EXECUTE format(
            'INSERT INTO %I OVERRIDING SYSTEM VALUE SELECT g.* FROM llm_proxy_target g '
            'WHERE NOT EXISTS (SELECT 1 FROM %I t WHERE t.id = g.id)', tbl, tbl);
        DROP TABLE llm_proxy_target;
    END LOOP;
    SELECT version INTO current FROM config_version;
    RETURN current;
END;
$$;
